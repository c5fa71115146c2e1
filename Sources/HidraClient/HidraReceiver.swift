import DequeModule
import HidraRuntime
import ZeroMQ

/// A consumer of a Hidra `forward` (format `native`), for Swift programs.
///
/// ```swift
/// let receiver = try HidraReceiver(connect: "tcp://127.0.0.1:5610")
/// while let frame = try receiver.receive(timeout: .seconds(1)) {
///   print(frame.kind, frame.meta.series, frame.meta.frame, frame.byteCount)
/// }
/// receiver.close()
/// ```
///
/// With a `push` forward (pattern `.pull`) frames are acknowledged
/// (docs/wire.md, "Acknowledgements"): by default each frame is acknowledged
/// when `receive` is called again, that is once the program has finished with
/// it; with `autoAcknowledge: false` call `acknowledge()`. Frames not
/// acknowledged when the receiver dies are resent to other consumers (or to this
/// program once restarted), so delivery is at least once; a frame this receiver
/// has already delivered is never delivered twice by it.
///
/// A receiver owns one ZeroMQ socket: use it from one thread at a time (it may
/// move between threads). Bad messages never throw: they are counted by kind in
/// `errors` (see docs/wire.md).
public final class HidraReceiver {
  public enum Pattern: Sendable {
    /// From a `pattern: push` forward: each frame goes to one of the connected
    /// consumers, and is acknowledged.
    case pull
    /// From a `pattern: pub` forward: every frame, unless this consumer falls behind.
    case sub
    /// From a `pattern: request` forward: each `receive` asks for the newest frame.
    case request
  }

  private let socket: Socket
  private let pattern: Pattern
  private let credit: Int
  private let autoAcknowledge: Bool
  private let session = String(UInt64.random(in: 1...UInt64.max), radix: 36)
  private let counts: Counts
  private var links: ForwardLinks
  /// Delivered data frames not yet acknowledged: forward id and seq.
  private var unacknowledged: [(forward: [UInt8], seq: UInt64)] = []
  /// Frames delivered lately (id and creation time: ids start again when the
  /// sending Hidra restarts), to drop resent copies.
  private var recent: Set<FrameKey> = []
  private var recentOrder = Deque<FrameKey>()
  private struct FrameKey: Hashable {
    var id: UInt64
    var created: UInt64
  }
  private var nextKeepAlive: ContinuousClock.Instant
  private var asked = false
  private static let recentMemory = 8192

  /// Rejected messages and lost frames so far, by kind.
  public var errors: [String: Int] { counts.byKind }
  /// Frames dropped because this receiver had already delivered them (resent
  /// by a forward that took this consumer for gone).
  public var duplicates: Int { counts.duplicates }

  /// Connects (or, with `bind: true`, binds) to `endpoint`. `credit` is how
  /// many frames a `push` forward may send ahead of this consumer's
  /// acknowledgements.
  public init(
    connect endpoint: String, pattern: Pattern = .pull, bind: Bool = false, credit: Int = 16,
    autoAcknowledge: Bool = true, maxMessage: Int = 256 << 20, context: ZMQContext? = nil
  ) throws {
    precondition(
      (1...Wire.Control.maxCredit).contains(credit), "credit must be 1...\(Wire.Control.maxCredit)")
    let context = try context ?? ZMQContext()
    let router = bind && pattern != .sub
    let socket = try Socket(pattern == .sub ? .sub : (router ? .router : .dealer), context: context)
    try socket.setOption(.linger, 0)
    try socket.setOption(.maxMessageSize, Int64(maxMessage))
    if pattern == .sub { try socket.subscribe("") }
    if router { try socket.setOption(.routerMandatory, true) }
    if bind { try socket.bind(endpoint) } else { try socket.connect(endpoint) }
    self.socket = socket
    self.pattern = pattern
    self.credit = credit
    self.autoAcknowledge = autoAcknowledge
    let counts = Counts()
    self.counts = counts
    links = ForwardLinks(router: router) {
      WireAssembler(maxMessage: maxMessage) { kind, _ in counts.byKind[kind, default: 0] += 1 }
    }
    nextKeepAlive = .now
  }

  /// The next complete frame, or nil when none arrived within `timeout` (nil
  /// timeout: wait as long as it takes). Acknowledges the frames delivered
  /// before (unless `autoAcknowledge` is off).
  public func receive(timeout: Duration? = nil) throws -> Frame? {
    if autoAcknowledge { acknowledge() }
    let deadline = timeout.map { ContinuousClock.now.advanced(by: $0) }
    while true {
      keepAlive()
      if pattern == .request && !asked {
        links.sendToAll(.next, on: socket)
        asked = !links.forwards.isEmpty
      }
      if var message = try socket.tryReceiveMultipart() {
        if let frame = accept(&message) { return frame }
        continue
      }
      var wait = Duration.milliseconds(100)
      if let deadline {
        let left = deadline - ContinuousClock.now
        if left <= .zero { return nil }
        wait = min(wait, left)
      }
      _ = try socket.poll(.readable, timeout: wait)
    }
  }

  /// Acknowledges every frame delivered so far (`failed: true`: tells the
  /// forward this consumer could not take them; they count as not delivered
  /// and are not resent).
  public func acknowledge(failed: Bool = false) {
    guard !unacknowledged.isEmpty else { return }
    links.acknowledge(unacknowledged.map { ($0.forward, $0.seq, !failed) }, on: socket)
    unacknowledged.removeAll()
  }

  /// Ends reading: acknowledges (if automatic) and says bye, so a forward
  /// resends at once what it had sent ahead to this consumer. A frame still
  /// being reassembled is counted as `incomplete`.
  public func close() {
    if autoAcknowledge { acknowledge() }
    if pattern != .sub { links.sendToAll(.bye, on: socket) }
    links.finish()
    try? socket.setOption(.linger, 1000)
  }

  private func accept(_ message: inout MultipartMessage) -> Frame? {
    let greeting: Wire.Control? = pattern == .pull ? .ready(credit: credit, session: session) : nil
    guard let arrival = links.accept(&message, greeting: greeting, on: socket) else { return nil }
    let frame = arrival.frame
    if frame.kind == .data {
      if pattern == .request { asked = false }
      if let seq = arrival.seq, pattern == .pull { unacknowledged.append((arrival.forward, seq)) }
      let key = FrameKey(id: frame.meta.id, created: frame.meta.createdNanos)
      if !recent.insert(key).inserted {
        counts.duplicates += 1
        return nil  // acknowledged with the next batch: it was handled already
      }
      recentOrder.append(key)
      if recentOrder.count > Self.recentMemory { recent.remove(recentOrder.removeFirst()) }
    }
    return frame
  }

  private func keepAlive() {
    guard pattern != .sub, ContinuousClock.now >= nextKeepAlive else { return }
    nextKeepAlive = .now.advanced(by: .seconds(1))
    // A request still unanswered is asked again: a forward that restarted
    // meanwhile has forgotten it (asking twice is harmless).
    let message: Wire.Control =
      pattern == .pull ? .ready(credit: credit, session: session) : (asked ? .next : .heartbeat)
    links.sendToAll(message, on: socket)
  }

  /// Counts, shared with the assemblers' report closures.
  private final class Counts {
    var byKind: [String: Int] = [:]
    var duplicates = 0
  }
}
