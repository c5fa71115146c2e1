import HidraGraph
import HidraRuntime
import ZeroMQ

/// `zmq`: frames in Hidra's native wire protocol, from another Hidra or any producer.
public enum ZMQSource {
  public static let spec = NodeTypeSpec(
    name: "zmq", kind: .source,
    summary: "frames in Hidra's native wire protocol (docs/wire.md), from another Hidra or any producer",
    details: """
      Receives multipart messages in the native protocol. Malformed, truncated, oversized or \
      wrong-version messages are counted and dropped; they never stop the node.
      """,
    options: [
      OptionSpec(
        "listen", .endpoint(schemes: ["tcp", "ipc"], role: .listen),
        doc: "Bind here and let producers connect."),
      OptionSpec(
        "connect", .endpoint(schemes: ["tcp", "ipc"], role: .connect),
        doc: "Connect to a producer that binds."),
      OptionSpec(
        "pattern", .choice(["pull", "sub"]), default: "pull",
        doc: "Socket pattern: `pull` (from push) or `sub` (from pub)."),
      OptionSpec(
        "max_message", .size(min: 1024), default: "256MiB",
        doc:
          "Largest frame accepted: a larger frame is dropped and counted (`oversized`). A single message part above it is dropped by ZeroMQ, which closes that producer's connection; the node never sees it and cannot count it."
      ),
    ],
    constraints: [.exactlyOne(["listen", "connect"])],
    example: """
      upstream:
        type: zmq
        listen: tcp://*:5600
      """)
}

extension ZMQSource {
  /// Messages ZeroMQ queues for this source per producer before the producer
  /// waits (push) or loses messages (pub). ZeroMQ counts messages, not bytes:
  /// keep the queue short and let the output edges hold the backlog.
  static let receiveHighWaterMark: Int32 = 64
  /// How many recently lost frames are remembered, so their remaining chunks are
  /// dropped without counting the same loss again.
  static let lostMemory = 8

  /// The running source: receives native-protocol messages (docs/wire.md),
  /// reassembles chunked frames and emits every frame that arrives intact.
  ///
  /// Payload parts are adopted without copying: each received ZeroMQ message
  /// part becomes a `Payload` that owns the message and closes it when the last
  /// frame holding it is gone.
  ///
  /// Every counted error is one rejected message or one lost frame: a frame
  /// whose chunks break off counts once, however many of its chunks arrive.
  struct Body: StageBody {
    let subscribe: Bool
    let bind: Bool
    let endpoint: String
    let maxMessage: Int
    /// The chunked frame being reassembled.
    private var partial: Partial?
    /// Ids of the frames given up most recently (at most `lostMemory`).
    private var lost: [UInt64] = []

    /// A chunked frame whose first chunks have arrived.
    struct Partial {
      var header: Wire.Header
      var count: Int
      var parts: [Payload] = []
      var received = 0
      var nextIndex = 0
    }

    init(node: Node) {
      subscribe = node["pattern"]?.string == "sub"
      bind = node["listen"] != nil
      endpoint = node["listen"]?.string ?? node["connect"]?.string ?? ""
      maxMessage = Int(clamping: node["max_message"]?.bytes ?? 256 << 20)
    }

    mutating func run(_ context: StageContext) throws {
      let socket = try Socket(subscribe ? .sub : .pull, context: SharedZMQ.context)
      try socket.setOption(.linger, 0)
      // ZeroMQ drops a larger part and disconnects its sender before we see it.
      try socket.setOption(.maxMessageSize, Int64(clamping: maxMessage))
      try socket.setOption(.receiveHighWaterMark, ZMQSource.receiveHighWaterMark)
      if subscribe { try socket.subscribe("") }
      if bind { try socket.bind(endpoint) } else { try socket.connect(endpoint) }
      while !context.isStopping {
        guard var message = try socket.tryReceiveMultipart() else {
          _ = try socket.poll(.readable, timeout: .milliseconds(100))
          continue
        }
        if let frame = accept(&message, context), !context.emit(frame) { return }
      }
      // Drain: take what ZeroMQ has already received (for at most a second, in
      // case a producer keeps sending), then give up an unfinished frame.
      let deadline = ContinuousClock.now.advanced(by: .seconds(1))
      while !context.isAborted, ContinuousClock.now < deadline, var message = try socket.tryReceiveMultipart()
      {
        if let frame = accept(&message, context), !context.emit(frame) { return }
      }
      if let open = partial.take() {
        context.reportError(
          "incomplete",
          "frame \(open.header.meta.id) ('\(open.header.meta.name)') incomplete when the source stopped: "
            + "\(open.received) of \(open.header.size) bytes")
      }
    }

    /// Handles one received message: the frame it completes, or nil (a chunk
    /// of a frame still incomplete, or a message that was rejected and counted).
    mutating func accept(_ message: inout MultipartMessage, _ context: StageContext) -> Frame? {
      guard message.count > 0 else { return nil }
      let header: Wire.Header
      do {
        header = try message.withPart(at: 0) { part in
          try part.withUnsafeBytes { try Wire.decodeHeader($0) }
        }
      } catch let error as Wire.DecodeError {
        context.reportError(error.kind, "message rejected: \(error.description)")
        return nil
      } catch {
        context.reportError("bad-header", "message rejected: \(error)")
        return nil
      }
      if let chunk = header.chunk { return acceptChunk(header, chunk, &message, context) }
      if let open = partial.take() {
        giveUp(open, "its next chunk was expected, frame \(header.meta.id) arrived", "bad-chunk", context)
      }
      guard header.size <= maxMessage else {
        context.reportError(
          "oversized",
          "frame \(header.meta.id) of \(header.size) bytes is larger than max_message \(maxMessage)")
        return nil
      }
      let parts = Self.takePayload(&message)
      let total = parts.reduce(0) { $0 + $1.count }
      guard total == header.size else {
        context.reportError(
          "bad-size", "frame \(header.meta.id) has \(total) payload bytes, its header says \(header.size)")
        return nil
      }
      return Frame(kind: header.kind, meta: header.meta, parts: parts)
    }

    /// Reassembles chunks (docs/wire.md, "Reassembling chunks"): one frame at a
    /// time, each chunk continuing exactly where the previous one ended.
    mutating func acceptChunk(
      _ header: Wire.Header, _ chunk: Wire.Chunk, _ message: inout MultipartMessage, _ context: StageContext
    ) -> Frame? {
      let id = header.meta.id
      if chunk.index == 0 {
        if let open = partial.take() {
          giveUp(open, "frame \(id) started before it was complete", "bad-chunk", context)
        }
        lost.removeAll { $0 == id }
        guard header.size <= maxMessage else {
          context.reportError(
            "oversized", "frame \(id) of \(header.size) bytes is larger than max_message \(maxMessage)")
          remember(id)
          return nil
        }
        guard chunk.offset == 0 else {
          context.reportError("bad-chunk", "frame \(id): first chunk at offset \(chunk.offset)")
          remember(id)
          return nil
        }
        partial = Partial(header: header, count: chunk.count)
      }
      guard var open = partial.take() else {
        // A frame whose start we never saw, or one already given up (not counted again).
        if !lost.contains(id) {
          context.reportError(
            "bad-chunk", "frame \(id): chunk \(chunk.index) arrived without the chunks before it")
          remember(id)
        }
        return nil
      }
      let openID = open.header.meta.id
      guard
        openID == id, chunk.index == open.nextIndex, chunk.count == open.count, chunk.offset == open.received,
        header.size == open.header.size, header.kind == open.header.kind
      else {
        let got = "chunk \(chunk.index)/\(chunk.count) at offset \(chunk.offset) of frame \(id)"
        let expected = "chunk \(open.nextIndex)/\(open.count) at offset \(open.received)"
        giveUp(open, "expected \(expected), got \(got)", "bad-chunk", context)
        if id != openID, !lost.contains(id) {
          // The chunk belongs to another frame whose start we did not see: lost as well.
          context.reportError(
            "bad-chunk", "frame \(id): chunk \(chunk.index) arrived without the chunks before it")
          remember(id)
        }
        return nil
      }
      let parts = Self.takePayload(&message)
      let length = parts.reduce(0) { $0 + $1.count }
      guard length <= open.header.size - open.received else {
        giveUp(open, "chunk \(chunk.index) brings more bytes than the frame's size", "bad-size", context)
        return nil
      }
      open.parts += parts
      open.received += length
      open.nextIndex += 1
      guard chunk.index == chunk.count - 1 else {
        partial = open
        return nil
      }
      guard open.received == open.header.size else {
        giveUp(open, "its last chunk arrived with bytes missing", "bad-size", context)
        return nil
      }
      return Frame(kind: open.header.kind, meta: open.header.meta, parts: open.parts)
    }

    /// Discards a partial frame and counts its loss once.
    mutating func giveUp(_ open: Partial, _ reason: String, _ kind: String, _ context: StageContext) {
      let meta = open.header.meta
      context.reportError(
        kind,
        "frame \(meta.id) ('\(meta.name)') discarded after \(open.received) of \(open.header.size) bytes: "
          + reason)
      remember(meta.id)
    }

    mutating func remember(_ id: UInt64) {
      lost.removeAll { $0 == id }
      if lost.count >= ZMQSource.lostMemory { lost.removeFirst() }
      lost.append(id)
    }

    /// Moves the payload parts (all parts after the header) out of `message`,
    /// each adopted without copying; empty parts are left out.
    static func takePayload(_ message: inout MultipartMessage) -> [Payload] {
      var parts: [Payload] = []
      // From the end: removing the last part moves no other part.
      while message.count > 1 {
        let part = message.remove(at: message.count - 1)
        if part.isEmpty { continue }
        parts.append(adopt(part))
      }
      parts.reverse()
      return parts
    }

    /// A payload over the bytes of a received message part, which it keeps open
    /// until the payload is freed. The bytes stay put: libzmq keeps a part's data
    /// (or, for small parts, the `zmq_msg_t` holding it, which `Message` allocates
    /// once) at one address until the part is closed.
    static func adopt(_ part: consuming Message) -> Payload {
      let owner = ReceivedPart(part)
      let bytes = owner.message.withUnsafeBytes { $0 }
      return Payload(adopting: bytes) { withExtendedLifetime(owner) {} }
    }
  }

  /// Owns one received message part for the payload that adopted its bytes.
  final class ReceivedPart: Sendable {
    let message: Message
    init(_ message: consuming Message) { self.message = message }
  }
}
