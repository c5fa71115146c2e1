import HidraGraph
import HidraRuntime
import Synchronization
import ZeroMQ

/// `forward`: sends frames out of the graph to consumers over the network.
public enum ForwardNode {
  public static let formats = [
    "native", "simplon-monitor", "hidra-transfer", "eiger-stream-v1", "eiger-stream-v2",
  ]

  public static let spec = NodeTypeSpec(
    name: "forward", kind: .forward,
    summary:
      "sends frames to consumers: Hidra's native protocol, SIMPLON monitor (OnDA), HiDRA or EIGER stream",
    details: """
      `native` speaks Hidra's wire protocol (docs/wire.md) over ZeroMQ with the chosen `pattern`. \
      `simplon-monitor` serves the EIGER monitor HTTP interface so OnDA reads from Hidra as from a \
      detector (docs/onda.md): each image is held, still compressed, in a bounded buffer and decompressed \
      into a TIFF when a client asks for it. `hidra-transfer` serves HiDRA's Transfer API for existing HiDRA clients. \
      `eiger-stream-v1`/`-v2` re-emit the detector stream so several stream readers can attach. \
      On a guaranteed edge, a native push forward waits for consumers' acknowledgements and resends \
      what was not acknowledged after a reconnect.
      """,
    options: [
      OptionSpec("format", .choice(formats), default: "native", doc: "What consumers speak."),
      OptionSpec(
        "pattern", .choice(["push", "pub", "request"]), default: "push",
        doc:
          "For native: `push` (load-balanced), `pub` (every subscriber; slow ones lose frames), `request` (a consumer asks and gets the newest frame)."
      ),
      OptionSpec(
        "listen", .endpoint(schemes: ["tcp", "ipc", "http"], role: .listen),
        doc: "Bind here and let consumers connect (`http://` for simplon-monitor)."),
      OptionSpec(
        "connect", .endpoint(schemes: ["tcp", "ipc"], role: .connect),
        doc: "Connect to a consumer that binds."),
      OptionSpec(
        "chunk_size", .size(min: 4096), default: "8MiB",
        doc: "Payloads larger than this travel in chunks of this size."),
      OptionSpec(
        "allowed_hosts", .list(.string), doc: "For hidra-transfer: hosts allowed to register as targets."),
      OptionSpec(
        "api_version", .string, default: "1.8.0",
        doc:
          "For simplon-monitor: the API version served, under `/monitor/api/<api_version>/` (OnDA and other clients use `1.6.0` or `1.8.0`; other versions get 404)."
      ),
      OptionSpec(
        "buffer_size", .integer(min: 1, max: 100_000), default: "4",
        doc:
          "For simplon-monitor: images held for clients when the forward starts; clients change it with `PUT config/buffer_size` (OnDA does)."
      ),
      OptionSpec(
        "buffer_bytes", .size(min: 1), default: "1GiB",
        doc:
          "For simplon-monitor: the most payload bytes (as received, still compressed) held for clients, whatever `buffer_size` says."
      ),
    ],
    constraints: [
      .exactlyOne(["listen", "connect"]),
      .onlyWhen(option: "pattern", when: "format", values: ["native"]),
      .onlyWhen(option: "allowed_hosts", when: "format", values: ["hidra-transfer"]),
      .onlyWhen(option: "api_version", when: "format", values: ["simplon-monitor"]),
      .onlyWhen(option: "buffer_size", when: "format", values: ["simplon-monitor"]),
      .onlyWhen(option: "buffer_bytes", when: "format", values: ["simplon-monitor"]),
    ],
    example: """
      live:
        type: forward
        input: {from: detector, delivery: latest, buffer: {frames: 4}}
        format: simplon-monitor
        listen: http://0.0.0.0:8080
      """,
    check: { check in
      let format = check.node["format"]?.string ?? "native"
      let address = check.node["listen"]?.string ?? check.node["connect"]?.string ?? ""
      let http = address.hasPrefix("http://")
      if format == "simplon-monitor" {
        if !http || check.node["connect"] != nil {
          check.error(
            check.node["listen"] != nil ? "listen" : "connect",
            "a simplon-monitor forward serves HTTP: it needs 'listen: http://HOST:PORT'")
        } else if case .success(let endpoint) = Endpoint.parse(address, schemes: ["http"], role: .listen),
          !endpoint.path.isEmpty, endpoint.path != "/"
        {
          check.error(
            "listen",
            "a simplon-monitor forward serves /monitor/api/<api_version>/ at the root: leave out the path '\(endpoint.path)'"
          )
        }
        if let version = check.node["api_version"]?.string,
          version.isEmpty || !version.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") })
        {
          check.error("api_version", "'\(version)' is not an API version such as 1.8.0")
        }
      } else if http {
        check.error("listen", "format '\(format)' speaks ZeroMQ: use a tcp:// or ipc:// address, not http://")
      }
      if format == "hidra-transfer", check.node["connect"] != nil {
        check.error("connect", "a hidra-transfer forward is a server: it needs 'listen: tcp://HOST:PORT'")
      }
    })
}

/// The one ZeroMQ context of the process, shared by every stage's sockets
/// (contexts are thread-safe; sockets are not and stay on their stage's thread).
enum SharedZMQ {
  static let created = Atomic<Bool>(false)
  static let context: ZMQContext = {
    do {
      let context = try ZMQContext(ioThreads: 1)
      created.store(true, ordering: .relaxed)
      return context
    } catch {
      fatalError("cannot create a ZeroMQ context: \(error)")
    }
  }()

  /// Waits until every socket is closed and what they still hold has been sent
  /// (each socket's linger), if any socket was ever made. Call once all stages
  /// have exited, before the process exits: exiting earlier loses the last
  /// messages still in ZeroMQ's queues.
  static func flush() {
    if created.load(ordering: .relaxed) { context.terminate() }
  }
}

/// Where a node's ZeroMQ socket goes: `listen:` binds, `connect:` connects
/// (validation lets a node have exactly one of them).
struct ZMQEndpoint {
  let address: String
  let bind: Bool

  init(_ node: Node) {
    bind = node["listen"] != nil
    address = node["listen"]?.string ?? node["connect"]?.string ?? ""
  }

  func attach(_ socket: borrowing Socket) throws {
    if bind { try socket.bind(address) } else { try socket.connect(address) }
  }
}

extension ForwardNode {
  /// Why a forward cannot run yet, or nil.
  static func unsupportedReason(_ node: Node) -> String? {
    let format = node["format"]?.string ?? "native"
    if format == "simplon-monitor" { return nil }
    guard format == "native" else { return "format '\(format)' cannot run yet" }
    let pattern = node["pattern"]?.string ?? "push"
    guard pattern != "request" else { return "pattern 'request' cannot run yet" }
    return nil
  }

  /// The running native forward: every frame as one message (header + payload),
  /// or as several chunk messages when its payload is larger than `chunk_size`.
  /// Payload parts are sent zero-copy: ZeroMQ holds the payload until it is on
  /// the wire.
  struct Body: StageBody {
    let publish: Bool
    let endpoint: ZMQEndpoint
    let chunkSize: Int
    let highWaterMark: Int32

    init(node: Node) {
      publish = node["pattern"]?.string == "pub"
      endpoint = ZMQEndpoint(node)
      chunkSize = Int(node["chunk_size"]?.bytes ?? 8 << 20)
      // ZeroMQ counts messages, not bytes: keep its queue short and let the edge's
      // byte-bounded buffer hold the backlog.
      highWaterMark = Int32(max(4, min(node.inputs.map(\.qos.bufferFrames).min() ?? 64, 1000)))
    }

    mutating func run(_ context: StageContext) throws {
      let socket = try Socket(publish ? .pub : .push, context: SharedZMQ.context)
      try socket.setOption(.sendHighWaterMark, highWaterMark)
      try socket.setOption(.linger, 0)
      try endpoint.attach(socket)
      while let frame = context.receive() {
        guard try send(frame, on: socket, context) else { break }
        context.counters.framesOut.add(1, ordering: .relaxed)
        context.counters.bytesOut.add(frame.byteCount, ordering: .relaxed)
      }
      // Drain: give queued messages time to reach consumers, unless aborted.
      if !context.isAborted { try? socket.setOption(.linger, 5000) }
      socket.close()
    }

    /// Sends one frame; false when the run was aborted while waiting.
    func send(_ frame: Frame, on socket: borrowing Socket, _ context: StageContext) throws -> Bool {
      let size = frame.byteCount
      guard size > chunkSize else {
        var message = MultipartMessage(minimumCapacity: 1 + frame.parts.count)
        message.append(Message(Wire.encodeHeader(frame)))
        for part in frame.parts { message.append(Self.message(part, part.bytes)) }
        return try deliver(&message, on: socket, context)
      }
      // Chunks: slices of the payload parts, in order, each at most chunkSize bytes.
      let count = (size + chunkSize - 1) / chunkSize
      for index in 0..<count {
        let start = index * chunkSize
        let end = min(size, start + chunkSize)
        var message = MultipartMessage(minimumCapacity: 2)
        message.append(
          Message(Wire.encodeHeader(frame, chunk: Wire.Chunk(index: index, count: count, offset: start))))
        var partStart = 0
        for part in frame.parts {
          let partEnd = partStart + part.count
          let low = max(start, partStart)
          let high = min(end, partEnd)
          if low < high {
            message.append(
              Self.message(
                part, UnsafeRawBufferPointer(rebasing: part.bytes[(low - partStart)..<(high - partStart)])))
          }
          partStart = partEnd
        }
        guard try deliver(&message, on: socket, context) else { return false }
      }
      return true
    }

    /// A zero-copy message over `bytes`, which belong to `payload`.
    static func message(_ payload: Payload, _ bytes: UnsafeRawBufferPointer) -> Message {
      guard bytes.count > 0 else { return Message() }
      return Message(bytesNoCopy: UnsafeMutableRawBufferPointer(mutating: bytes)) {
        withExtendedLifetime(payload) {}
      }
    }

    /// Push waits for room (back-pressure); pub never waits (ZeroMQ drops for slow
    /// subscribers). Waiting wakes up regularly to notice an abort.
    func deliver(_ message: inout MultipartMessage, on socket: borrowing Socket, _ context: StageContext)
      throws -> Bool
    {
      while true {
        if try socket.trySend(&message) { return true }
        if publish { return true }
        if context.isAborted { return false }
        _ = try socket.poll(.writable, timeout: .milliseconds(200))
      }
    }
  }
}
