import HidraRuntime
import ZeroMQ

/// Turns received native-protocol messages (docs/wire.md) into frames: checks
/// each header, reassembles chunked frames by the spec's rules, and reports every
/// rejected message or lost frame once, by kind, to `report`.
///
/// Used by Hidra's `zmq` source and by `HidraReceiver`; payload parts are adopted
/// from the received ZeroMQ messages without a copy.
public struct WireAssembler {
  /// Frames whose `size` is larger than this are rejected (`oversized`).
  public let maxMessage: Int
  /// Called with an error kind (`bad-header`, `wrong-version`, `oversized-header`,
  /// `bad-chunk`, `bad-size`, `oversized`, `incomplete`) and a message.
  public var report: (_ kind: String, _ message: String) -> Void
  /// The chunked frame being reassembled.
  private var partial: Partial?
  /// The `seq` of the frame `accept` returned last (nil when it had none): what
  /// a consumer acknowledges.
  public private(set) var lastSeq: UInt64?
  /// Ids of the frames given up most recently (at most `lostMemory`), so later
  /// chunks of a lost frame are not counted again.
  private var lost: [UInt64] = []
  static let lostMemory = 8

  /// A chunked frame whose first chunks have arrived.
  struct Partial {
    var header: Wire.Header
    var count: Int
    var parts: [Payload] = []
    var received = 0
    var nextIndex = 0
  }

  public init(maxMessage: Int, report: @escaping (_ kind: String, _ message: String) -> Void) {
    self.maxMessage = maxMessage
    self.report = report
  }

  /// Gives up a frame still being reassembled (the input ended), counting it as
  /// `incomplete`.
  public mutating func finish() {
    if let open = partial.take() {
      report(
        "incomplete",
        "frame \(open.header.meta.id) ('\(open.header.meta.name)') incomplete when the input ended: "
          + "\(open.received) of \(open.header.size) bytes")
    }
  }

  /// Handles one received message: the frame it completes, or nil (a chunk
  /// of a frame still incomplete, or a message that was rejected and counted).
  public mutating func accept(_ message: inout MultipartMessage) -> Frame? {
    guard message.count > 0 else { return nil }
    let header: Wire.Header
    do {
      header = try message.withPart(at: 0) { part in
        try part.withUnsafeBytes { try Wire.decodeHeader($0) }
      }
    } catch let error as Wire.DecodeError {
      report(error.kind, "message rejected: \(error.description)")
      return nil
    } catch {
      report("bad-header", "message rejected: \(error)")
      return nil
    }
    if let chunk = header.chunk { return acceptChunk(header, chunk, &message) }
    if let open = partial.take() {
      giveUp(open, "its next chunk was expected, frame \(header.meta.id) arrived", "bad-chunk")
    }
    guard header.size <= maxMessage else {
      report(
        "oversized",
        "frame \(header.meta.id) of \(header.size) bytes is larger than max_message \(maxMessage)")
      return nil
    }
    let parts = Self.takePayload(&message)
    let total = parts.reduce(0) { $0 + $1.count }
    guard total == header.size else {
      report(
        "bad-size", "frame \(header.meta.id) has \(total) payload bytes, its header says \(header.size)")
      return nil
    }
    lastSeq = header.seq
    return Frame(kind: header.kind, meta: header.meta, parts: parts)
  }

  /// Reassembles chunks (docs/wire.md, "Reassembling chunks"): one frame at a
  /// time, each chunk continuing exactly where the previous one ended.
  mutating func acceptChunk(
    _ header: Wire.Header, _ chunk: Wire.Chunk, _ message: inout MultipartMessage
  ) -> Frame? {
    let id = header.meta.id
    if chunk.index == 0 {
      if let open = partial.take() {
        giveUp(open, "frame \(id) started before it was complete", "bad-chunk")
      }
      lost.removeAll { $0 == id }
      guard header.size <= maxMessage else {
        report(
          "oversized", "frame \(id) of \(header.size) bytes is larger than max_message \(maxMessage)")
        remember(id)
        return nil
      }
      guard chunk.offset == 0 else {
        report("bad-chunk", "frame \(id): first chunk at offset \(chunk.offset)")
        remember(id)
        return nil
      }
      partial = Partial(header: header, count: chunk.count)
    }
    guard var open = partial.take() else {
      // A frame whose start we never saw, or one already given up (not counted again).
      if !lost.contains(id) {
        report(
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
      giveUp(open, "expected \(expected), got \(got)", "bad-chunk")
      if id != openID, !lost.contains(id) {
        // The chunk belongs to another frame whose start we did not see: lost as well.
        report(
          "bad-chunk", "frame \(id): chunk \(chunk.index) arrived without the chunks before it")
        remember(id)
      }
      return nil
    }
    let parts = Self.takePayload(&message)
    let length = parts.reduce(0) { $0 + $1.count }
    guard length <= open.header.size - open.received else {
      giveUp(open, "chunk \(chunk.index) brings more bytes than the frame's size", "bad-size")
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
      giveUp(open, "its last chunk arrived with bytes missing", "bad-size")
      return nil
    }
    lastSeq = open.header.seq
    return Frame(kind: open.header.kind, meta: open.header.meta, parts: open.parts)
  }

  /// Discards a partial frame and counts its loss once.
  mutating func giveUp(_ open: Partial, _ reason: String, _ kind: String) {
    let meta = open.header.meta
    report(
      kind,
      "frame \(meta.id) ('\(meta.name)') discarded after \(open.received) of \(open.header.size) bytes: "
        + reason)
    remember(meta.id)
  }

  mutating func remember(_ id: UInt64) {
    lost.removeAll { $0 == id }
    if lost.count >= Self.lostMemory { lost.removeFirst() }
    lost.append(id)
  }

  /// Moves the payload parts (all parts after the header) out of `message`,
  /// each adopted without copying; empty parts are left out.
  public static func takePayload(_ message: inout MultipartMessage) -> [Payload] {
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
  public static func adopt(_ part: consuming Message) -> Payload {
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
