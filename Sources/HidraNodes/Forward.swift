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
      detector (docs/onda.md): each image is held, still compressed, in a bounded buffer and \
      decompressed into a TIFF when a client asks for it. `hidra-transfer` serves HiDRA 4.x's Transfer API for existing HiDRA clients \
      (docs/hidra-compat.md): signals on the `listen` port (HiDRA's 50000), query requests on the \
      next port (50001); each data frame is a file named by its relative path, sent in chunks of \
      `chunk_size` (10 MiB unless set) to the targets that registered for it; series start and end \
      frames are not files and are not sent. \
      `eiger-stream-v1`/`-v2` re-emit the detector stream so several stream readers can attach: with \
      `listen:` the forward speaks ZeroMQ's protocol (ZMTP 3.0, the PUSH side) itself, so each series' \
      start and end reach every connected reader (a reader joining mid-series first gets the open \
      series' start) while images go to one reader each, in turn, skipping readers whose queue is \
      full; with `connect:` it serves the one reader there on a PUSH socket. v2 passes the CBOR \
      messages of a stream-v2 source through unchanged; v1 re-sends a stream-v1 source's header \
      parts and image blobs untouched and writes each image's JSON parts again from its metadata. \
      Neither converts between stream versions: such frames are counted and dropped. Stream readers \
      do not acknowledge, so these formats confirm nothing; `chunk_size` does not apply to them. \
      A native `push` forward hands each frame to one consumer with credit and keeps it until that \
      consumer acknowledges it (docs/wire.md); a consumer that leaves or goes silent for \
      `peer_timeout` has its unacknowledged frames resent to the others (or to it once it is back), \
      so a guaranteed edge is guaranteed end to end, and the acknowledgement is the confirmation \
      sources wait for (`on_done`). `pub` and `request` confirm nothing.
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
        doc:
          "Payloads larger than this travel in chunks of this size (hidra-transfer: HiDRA's `chunksize`, 10MiB when not set)."
      ),
      OptionSpec(
        "acknowledge", .boolean, default: "true",
        doc:
          "For native push: consumers acknowledge each frame (docs/wire.md). `false` sends on a plain PUSH socket that any PULL socket can read, without acknowledgements or resending."
      ),
      OptionSpec(
        "peer_timeout", .duration, default: "10s",
        doc:
          "For native push and request: a consumer silent this long is gone; what it did not acknowledge is resent to the others."
      ),
      OptionSpec(
        "allowed_hosts", .list(.string),
        doc:
          "For hidra-transfer: hosts (names or addresses) allowed as targets; others get `NO_VALID_HOST`. Unset: any host."
      ),
      OptionSpec(
        "metadata", .boolean, default: "true",
        doc:
          "For hidra-transfer: serve the `STREAM_METADATA` and `QUERY_NEXT_METADATA` modes (one metadata message per file reaching this forward); false answers their START with `STORING_DISABLED`."
      ),
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
      .onlyWhen(option: "peer_timeout", when: "format", values: ["native"]),
      .onlyWhen(option: "acknowledge", when: "pattern", values: ["push"]),
      .onlyWhen(option: "allowed_hosts", when: "format", values: ["hidra-transfer"]),
      .onlyWhen(option: "metadata", when: "format", values: ["hidra-transfer"]),
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
      if format == "hidra-transfer" {
        if check.node["connect"] != nil {
          check.error("connect", "a hidra-transfer forward is a server: it needs 'listen: tcp://HOST:PORT'")
        } else if let listen = check.node["listen"]?.string, !http {
          // An address that does not parse has its error already.
          if let parsed = try? Endpoint.parse(listen, schemes: ["tcp", "ipc"], role: .listen).get(),
            parsed.scheme != "tcp" || parsed.port == nil || parsed.port == 65535
          {
            check.error(
              "listen",
              "a hidra-transfer forward needs 'listen: tcp://HOST:PORT' with a fixed port below 65535 (requests use PORT+1)"
            )
          }
        }
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
  /// The body for a forward's format, and for a native forward's pattern.
  static func makeBody(_ node: Node) throws -> any StageBody {
    switch node["format"]?.string ?? "native" {
    case "hidra-transfer": return try HidraTransferForward.Body(node: node)
    case "simplon-monitor": return try SimplonMonitor.Body(node: node)
    case "eiger-stream-v1", "eiger-stream-v2": return StreamForward.Body(node: node)
    default: break
    }
    switch node["pattern"]?.string ?? "push" {
    case "pub": return SocketBody(node: node, publish: true)
    case "request": return RequestBody(node: node)
    default:
      if node["acknowledge"]?.boolean == false { return SocketBody(node: node, publish: false) }
      return PushBody(node: node)
    }
  }
}
