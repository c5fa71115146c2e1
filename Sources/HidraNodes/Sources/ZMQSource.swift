import HidraClient
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
    let endpoint: ZMQEndpoint
    let maxMessage: Int

    init(node: Node) {
      subscribe = node["pattern"]?.string == "sub"
      endpoint = ZMQEndpoint(node)
      maxMessage = Int(clamping: node["max_message"]?.bytes ?? 256 << 20)
    }

    mutating func run(_ context: StageContext) throws {
      let socket = try Socket(subscribe ? .sub : .pull, context: SharedZMQ.context)
      try socket.setOption(.linger, 0)
      // ZeroMQ drops a larger part and disconnects its sender before we see it.
      try socket.setOption(.maxMessageSize, Int64(clamping: maxMessage))
      try socket.setOption(.receiveHighWaterMark, ZMQSource.receiveHighWaterMark)
      if subscribe { try socket.subscribe("") }
      try endpoint.attach(socket)
      var assembler = WireAssembler(maxMessage: maxMessage) { kind, message in
        context.reportError(kind, message)
      }
      while !context.isStopping {
        guard var message = try socket.tryReceiveMultipart() else {
          _ = try socket.poll(.readable, timeout: .milliseconds(100))
          continue
        }
        if let frame = assembler.accept(&message), !context.emit(frame) { return }
      }
      // Drain: take what ZeroMQ has already received (for at most a second, in
      // case a producer keeps sending), then give up an unfinished frame.
      let deadline = ContinuousClock.now.advanced(by: .seconds(1))
      while !context.isAborted, ContinuousClock.now < deadline, var message = try socket.tryReceiveMultipart()
      {
        if let frame = assembler.accept(&message), !context.emit(frame) { return }
      }
      assembler.finish()
    }
  }
}
