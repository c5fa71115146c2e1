import Glibc
import HidraClient
import HidraGraph
import HidraRuntime
import Synchronization
import ZeroMQ

/// `zmq`: frames in Hidra's native wire protocol, from another Hidra or any producer.
public enum ZMQSource {
  public static let spec = NodeTypeSpec(
    name: "zmq", kind: .source,
    summary: "frames in Hidra's native wire protocol (docs/wire.md), from another Hidra or any producer",
    details: """
      Receives multipart messages in the native protocol. Malformed, truncated, oversized or \
      wrong-version messages are counted and dropped; they never stop the node. With `pull` it is \
      the consumer of a `push` forward: it acknowledges each frame only once every guaranteed sink \
      in this graph has confirmed it, so a chain of Hidras keeps the end-to-end guarantee.
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
        "acknowledge", .boolean, default: "true",
        doc:
          "For pull: acknowledge frames to a `push` forward (docs/wire.md). `false` reads with a plain PULL socket, from any PUSH producer (and from a forward with `acknowledge: false`)."
      ),
      OptionSpec(
        "max_message", .size(min: 1024), default: "256MiB",
        doc:
          "Largest frame accepted: a larger frame is dropped and counted (`oversized`). A single message part above it is dropped by ZeroMQ, which closes that producer's connection; the node never sees it and cannot count it."
      ),
    ],
    constraints: [
      .exactlyOne(["listen", "connect"]),
      .onlyWhen(option: "acknowledge", when: "pattern", values: ["pull"]),
    ],
    example: """
      upstream:
        type: zmq
        listen: tcp://*:5600
      """)
}

extension ZMQSource {
  /// Messages ZeroMQ queues for a plain source per producer before the
  /// producer waits (push) or drops them (pub).
  /// ZeroMQ counts messages, not bytes: keep the queue short and let the
  /// output edges hold the backlog.
  static let receiveHighWaterMark: Int32 = 64
  /// Frames a `pull` source lets a forward send ahead of its acknowledgements.
  static let credit = 64

  struct Body: StageBody {
    let subscribe: Bool
    let acknowledge: Bool
    let endpoint: ZMQEndpoint
    let maxMessage: Int

    init(node: Node) {
      subscribe = node["pattern"]?.string == "sub"
      acknowledge = !subscribe && node["acknowledge"]?.boolean != false
      endpoint = ZMQEndpoint(node)
      maxMessage = Int(clamping: node["max_message"]?.bytes ?? 256 << 20)
    }

    mutating func run(_ context: StageContext) throws {
      if !acknowledge {
        try PlainLoop(subscribe: subscribe, endpoint: endpoint, maxMessage: maxMessage).run(context)
      } else {
        var consumer = ConsumerLoop(endpoint: endpoint, maxMessage: maxMessage)
        try consumer.run(context)
      }
    }
  }

  /// `pattern: sub` (every frame a publisher sends, while this source keeps
  /// up) and `pull` with `acknowledge: false` (a plain PULL socket).
  ///
  /// Payload parts are adopted without copying: each received ZeroMQ message
  /// part becomes a `Payload` that owns the message and closes it when the last
  /// frame holding it is gone. Every counted error is one rejected message or
  /// one lost frame: a frame whose chunks break off counts once, however many of
  /// its chunks arrive.
  struct PlainLoop {
    let subscribe: Bool
    let endpoint: ZMQEndpoint
    let maxMessage: Int

    func run(_ context: StageContext) throws {
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
        if let frame = assembler.accept(&message), !context.emit(consume frame) { return }
      }
      // Drain: take what ZeroMQ has already received (for at most a second, in
      // case a producer keeps sending), then give up an unfinished frame.
      let deadline = ContinuousClock.now.advanced(by: .seconds(1))
      while !context.isAborted, ContinuousClock.now < deadline, var message = try socket.tryReceiveMultipart()
      {
        if let frame = assembler.accept(&message), !context.emit(consume frame) { return }
      }
      assembler.finish()
    }
  }

  /// `pattern: pull`: the consumer side of a `push` forward (docs/wire.md,
  /// "Acknowledgements"). A DEALER when connecting (one forward), a ROUTER when
  /// listening (any number of forwards, each with its own reassembly, so
  /// chunked frames from several forwards never mix).
  ///
  /// Every frame that carries a `seq` is tracked through this graph and
  /// acknowledged only once every guaranteed sink here confirmed it (or as
  /// `failed` when one could not take it), so a chain of Hidras is guaranteed
  /// end to end: the first source hears of a frame only when the last store has it.
  struct ConsumerLoop {
    let endpoint: ZMQEndpoint
    let maxMessage: Int
    let session = String(UInt64.random(in: 1...UInt64.max), radix: 36)
    /// Frames emitted and not yet settled.
    var outstanding = 0

    init(endpoint: ZMQEndpoint, maxMessage: Int) {
      self.endpoint = endpoint
      self.maxMessage = maxMessage
    }

    mutating func run(_ context: StageContext) throws {
      let router = endpoint.bind
      let socket = try Socket(router ? .router : .dealer, context: SharedZMQ.context)
      try socket.setOption(.linger, 0)
      try socket.setOption(.maxMessageSize, Int64(clamping: maxMessage))
      if router { try socket.setOption(.routerMandatory, true) }
      try endpoint.attach(socket)
      let maxMessage = self.maxMessage
      var links = ForwardLinks(router: router) {
        WireAssembler(maxMessage: maxMessage) { kind, message in context.reportError(kind, message) }
      }
      let ready = Wire.Control.ready(credit: ZMQSource.credit, session: session)
      let outcomes = SettledQueue<Acknowledgement>()
      var nextKeepAlive: UInt64 = 0
      while !context.isStopping {
        let now = monotonicNanos()
        if now >= nextKeepAlive {
          nextKeepAlive = now + 1_000_000_000
          links.sendToAll(ready, on: socket)
        }
        acknowledge(outcomes, &links, socket)
        guard var message = try socket.tryReceiveMultipart() else {
          // Frames in flight wait for our acknowledgements: look again soon.
          _ = try socket.poll(.readable, timeout: .milliseconds(outstanding > 0 ? 1 : 100))
          continue
        }
        guard let arrival = links.accept(&message, greeting: ready, on: socket) else { continue }
        var frame = arrival.frame
        if let seq = arrival.seq, frame.kind == .data {
          let forward = arrival.forward
          frame.track(
            Ledger { confirmed in
              outcomes.add(Acknowledgement(forward: forward, seq: seq), confirmed: confirmed)
            })
          outstanding += 1
        }
        if !context.emit(consume frame) { return }
      }
      // Stop reading; acknowledge what the graph finishes (while it drains), then
      // say bye so each forward resends elsewhere what it had queued for us.
      while outstanding > 0 && !context.isAborted {
        acknowledge(outcomes, &links, socket)
        if outstanding > 0 { usleep(1000) }
      }
      links.sendToAll(.bye, on: socket)
      links.finish()
      try? socket.setOption(.linger, 1000)
    }

    struct Acknowledgement: Sendable {
      var forward: [UInt8]
      var seq: UInt64
    }

    /// Sends the acknowledgements of the frames the graph settled.
    mutating func acknowledge(
      _ outcomes: SettledQueue<Acknowledgement>, _ links: inout ForwardLinks, _ socket: borrowing Socket
    ) {
      let settled = outcomes.take()
      guard !settled.isEmpty else { return }
      outstanding -= settled.count
      links.acknowledge(settled.map { ($0.item.forward, $0.item.seq, $0.confirmed) }, on: socket)
    }
  }
}
