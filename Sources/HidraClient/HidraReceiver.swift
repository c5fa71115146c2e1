import HidraRuntime
import ZeroMQ

/// A consumer of a Hidra `forward` (format `native`), for Swift programs.
///
/// ```swift
/// let receiver = try HidraReceiver(connect: "tcp://127.0.0.1:5610", pattern: .sub)
/// while let frame = try receiver.receive(timeout: .seconds(1)) {
///   print(frame.kind, frame.meta.series, frame.meta.frame, frame.byteCount)
/// }
/// ```
///
/// A receiver owns one ZeroMQ socket: use it from one thread at a time (it may
/// move between threads). Bad messages never throw: they are counted by kind in
/// `errors` (see docs/wire.md). There are no acknowledgements yet: a `push`
/// consumer that dies loses what ZeroMQ had queued for it.
public final class HidraReceiver {
  public enum Pattern: Sendable {
    /// From a `pattern: push` forward: each frame goes to one of the connected consumers.
    case pull
    /// From a `pattern: pub` forward: every frame, unless this consumer falls behind.
    case sub
  }

  private let socket: Socket
  private var assembler: WireAssembler
  private let counts: ErrorCounts

  /// Rejected messages and lost frames so far, by kind.
  public var errors: [String: Int] { counts.byKind }

  /// Connects (or, with `bind: true`, binds) to `endpoint`.
  public init(
    connect endpoint: String, pattern: Pattern = .pull, bind: Bool = false, maxMessage: Int = 256 << 20,
    context: ZMQContext? = nil
  ) throws {
    let context = try context ?? ZMQContext()
    socket = try Socket(pattern == .sub ? .sub : .pull, context: context)
    try socket.setOption(.linger, 0)
    try socket.setOption(.maxMessageSize, Int64(maxMessage))
    if pattern == .sub { try socket.subscribe("") }
    if bind { try socket.bind(endpoint) } else { try socket.connect(endpoint) }
    let counts = ErrorCounts()
    self.counts = counts
    assembler = WireAssembler(maxMessage: maxMessage) { kind, _ in counts.byKind[kind, default: 0] += 1 }
  }

  /// The next complete frame, or nil when none arrived within `timeout` (nil
  /// timeout: wait as long as it takes).
  public func receive(timeout: Duration? = nil) throws -> Frame? {
    let deadline = timeout.map { ContinuousClock.now.advanced(by: $0) }
    while true {
      if var message = try socket.tryReceiveMultipart() {
        if let frame = assembler.accept(&message) { return frame }
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

  /// Ends reading: a frame still being reassembled is counted as `incomplete`.
  public func close() { assembler.finish() }

  /// Error counts, shared with the assembler's report closure.
  private final class ErrorCounts {
    var byKind: [String: Int] = [:]
  }
}
