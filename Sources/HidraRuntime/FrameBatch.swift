/// Frames a stage hands on together (`StageContext.emit(_:)` with a batch).
///
/// A stage that has several frames at hand (a source running as fast as its
/// consumers allow, a receiver draining what has arrived) emits them as one
/// batch: the nodes fused after it each run over the whole batch in turn, and
/// each edge takes the batch with one publication for its consumer, not one per
/// frame. Each edge still applies its QoS to every frame, in order, exactly as
/// if they came one by one.
///
/// Why: a frame's own work is often streaming (hashing 64 KiB, say) and leaves
/// the caches cold for the runtime's bookkeeping that follows it; by the batch,
/// that bookkeeping runs once per batch with its code and data warm, and the
/// streaming work runs back to back, as it would in a plain loop
/// (docs/architecture.md, "Stages hand frames on in batches").
///
/// Fill a batch with what is already there and emit it when `isFull` or when
/// nothing more is at hand: never wait for frames to fill a batch, as that
/// only adds latency.
public struct FrameBatch: ~Copyable {
  /// A batch holds at most this many frames, as a consumer takes at most this
  /// many from its inputs at once.
  public static let maxFrames = 64
  /// ... and stops at this many payload bytes (after at least one frame), so a
  /// stage holds little beyond its edges' byte bounds: small frames move in
  /// batches, large ones one at a time.
  public static let maxBytes = 1 << 20

  var ring: FrameRing
  /// Payload bytes of the frames appended since the batch was last emptied.
  public internal(set) var byteCount = 0

  public init() { ring = FrameRing(capacity: Self.maxFrames) }

  public var count: Int { ring.count }
  public var isEmpty: Bool { ring.isEmpty }

  /// Whether the batch holds as much as a batch should: emit it now.
  public var isFull: Bool { ring.count >= Self.maxFrames || byteCount >= Self.maxBytes }

  /// Adds a frame behind the others (moved in, not copied).
  public mutating func append(_ frame: consuming Frame) {
    byteCount += frame.byteCount
    ring.append(frame)
  }
}
