import Foundation
import HidraClient
import HidraGraph
import HidraRuntime
import ZeroMQ

#if canImport(Glibc)
  import Glibc
#endif

/// `hidra`: files from a running HiDRA datamanager (or a Hidra `hidra-transfer`
/// forward), received as a Transfer API client does.
public enum HidraTransferSource {
  public static let spec = NodeTypeSpec(
    name: "hidra", kind: .source,
    summary: "files from a running HiDRA 4.x datamanager, read as its Transfer API clients read them",
    details: """
      Registers with the datamanager on `signal_host` (its signal port, HiDRA's 50000) as one target, \
      `ANNOUNCE:PORT` (the `listen` port under the `announce` name), in `stream` mode (every matching \
      file) or `query-next` mode (the next new file, asked for one at a time). The datamanager \
      connects to the `listen` socket and sends each file in chunks; each file, reassembled from \
      its chunks (in order, one file at a time), becomes one data frame of series 1 named by its \
      relative path, with attributes `mtime_ns` and `size`. Chunks out of order, of another file, \
      beyond `max_file` or disagreeing with `filesize` lose their file and are counted; they never \
      stop the node. The registration is renewed every `refresh`, so a restarted datamanager \
      (which forgets its clients) sends again. A refused registration (`VERSION_CONFLICT`, \
      `NO_VALID_HOST`, `NO_VALID_SIGNAL`) fails the run; an unanswered one is retried every second. \
      On stop the node unregisters (`STOP_STREAM` or `STOP_QUERY_NEXT`).
      """,
    options: [
      OptionSpec(
        "signal_host", .string, required: true,
        doc: "The host of the datamanager (or of a hidra-transfer forward): HiDRA's `signal_host`."),
      OptionSpec(
        "signal_port", .integer(min: 1, max: 65535), default: "50000", doc: "The datamanager's signal port."),
      OptionSpec(
        "request_port", .integer(min: 1, max: 65535),
        doc: "The datamanager's request port for `query-next` (NEXT/CANCEL); default `signal_port` + 1."),
      OptionSpec(
        "mode", .choice(["stream", "query-next"]), default: "stream",
        doc: "`stream`: every matching file; `query-next`: the next new file, each time one was received."),
      OptionSpec(
        "listen", .endpoint(schemes: ["tcp"], role: .listen), required: true,
        doc:
          "Bind the data socket here (`tcp://HOST:PORT`; `PORT` may be `*`); the datamanager connects to it."),
      OptionSpec(
        "announce", .string,
        doc:
          "The host name the datamanager connects to; default the `listen` host, or this machine's name when that is `*` or `0.0.0.0`."
      ),
      OptionSpec(
        "appid", .string, doc: "The application id sent with every signal; default this process's id."),
      OptionSpec(
        "version", .string, default: HidraTransfer.version,
        doc: "The HiDRA version sent; the datamanager refuses another major version. Empty skips its check."),
      OptionSpec(
        "pattern", .regex, default: ".*",
        doc: "Files to receive: a Python `re.match` pattern for the file name, anchored at its start only."),
      OptionSpec(
        "max_file", .size(min: 1024), default: "1GiB",
        doc: "Largest file accepted; a larger one is dropped and counted (`oversized`)."),
      OptionSpec(
        "refresh", .duration, default: "10s",
        doc: "How often the registration is renewed; `0s` registers once."),
    ],
    example: """
      beamline:
        type: hidra
        signal_host: hidra.example
        mode: stream
        listen: tcp://*:50101
        pattern: ".*\\\\.cbf$"
      """)
}

extension HidraTransferSource {
  /// Messages ZeroMQ queues before the datamanager waits: a few chunks.
  static let receiveHighWaterMark: Int32 = 8

  struct Body: StageBody {
    let signalEndpoint: String
    let requestEndpoint: String
    let query: Bool
    let listen: String
    let announceHost: String
    let appid: String
    let version: String
    let pattern: String
    let maxFile: Int
    let refreshNanos: UInt64?

    init(node: Node) throws {
      let host = node["signal_host"]?.string ?? ""
      let signalPort = node["signal_port"]?.integer ?? HidraTransfer.defaultSignalPort
      let shownHost = host.contains(":") ? "[\(host)]" : host
      signalEndpoint = "tcp://\(shownHost):\(signalPort)"
      requestEndpoint = "tcp://\(shownHost):\(node["request_port"]?.integer ?? signalPort + 1)"
      query = node["mode"]?.string == "query-next"
      listen = node["listen"]?.string ?? ""
      guard case .success(let endpoint) = Endpoint.parse(listen, schemes: ["tcp"], role: .listen) else {
        throw NodeSetupError("'listen' must be tcp://HOST:PORT")
      }
      if let announce = node["announce"]?.string {
        announceHost = announce
      } else if endpoint.isWildcardHost {
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, name.count - 1)
        announceHost = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
      } else {
        announceHost = endpoint.host
      }
      guard !announceHost.contains(":") else {
        throw NodeSetupError("HiDRA addresses have one ':': announce an IPv4 address or a host name")
      }
      appid = node["appid"]?.string ?? String(getpid())
      version = node["version"]?.string ?? HidraTransfer.version
      pattern = node["pattern"]?.string ?? ".*"
      maxFile = Int(clamping: node["max_file"]?.bytes ?? 1 << 30)
      let refresh = node["refresh"]?.seconds ?? 10
      refreshNanos = refresh > 0 ? UInt64(refresh * 1e9) : nil
    }

    mutating func run(_ context: StageContext) throws {
      let data = try Socket(.pull, context: SharedZMQ.context)
      try data.setOption(.linger, 0)
      try data.setOption(.receiveHighWaterMark, HidraTransferSource.receiveHighWaterMark)
      try data.setOption(.maxMessageSize, Int64(clamping: maxFile))
      // Bound before registering, so nothing sent after the START is lost.
      try data.bind(listen)
      let bound = try data.lastEndpoint()
      guard let port = bound.split(separator: ":").last.flatMap({ Int($0) }) else {
        throw NodeSetupError("cannot tell the port of \(bound)")
      }
      let target = "\(announceHost):\(port)"
      let targets = "[[\(Rendering.quote(target)), 0, \(Rendering.quote(pattern))]]"
      let requests = try Socket(.push, context: SharedZMQ.context)
      try requests.setOption(.linger, 0)
      if query { try requests.connect(requestEndpoint) }
      let mode = query ? "QUERY_NEXT" : "STREAM"

      var client = Client(context: context, maxFile: maxFile)
      guard context.emit(.seriesStart(1, id: client.nextID(), attributes: ["host": signalEndpoint])) else {
        return
      }
      var registered = false
      var nextRegistration: UInt64 = 0
      var warned = false
      while !context.isStopping {
        if monotonicNanos() >= nextRegistration {
          let reply = try HidraTransfer.signal(
            [version, appid, "START_" + mode, targets], to: signalEndpoint, context: SharedZMQ.context)
          switch reply?.first {
          case "START_" + mode:
            if !registered {
              Log.info("\(context.node.name): registered as \(target) with \(signalEndpoint) (\(mode))")
            }
            registered = true
            warned = false
            if query {
              // Exactly one request outstanding, also after the datamanager restarted.
              try sendRequest("CANCEL", target, on: requests)
              try sendRequest("NEXT", target, on: requests)
            }
            nextRegistration = refreshNanos.map { monotonicNanos() + $0 } ?? .max
          case nil:
            if !warned {
              Log.warning("\(context.node.name): no reply from \(signalEndpoint); retrying every second")
            }
            warned = true
            nextRegistration = monotonicNanos() + 1_000_000_000
          case let refusal?:
            let detail = reply?.dropFirst().first.map { " (\($0))" } ?? ""
            throw NodeSetupError("\(signalEndpoint) refused START_\(mode): \(refusal)\(detail)")
          }
        }
        guard var message = try data.tryReceiveMultipart() else {
          _ = try data.poll(.readable, timeout: .milliseconds(100))
          continue
        }
        let outcome = client.accept(&message)
        if case .file(let frame) = outcome, !context.emit(consume frame) { return }
        if query, outcome.endsFile { try sendRequest("NEXT", target, on: requests) }
      }
      if registered {
        _ = try? HidraTransfer.signal(
          [version, appid, "STOP_" + mode, targets], to: signalEndpoint, context: SharedZMQ.context)
      }
      // Take what already arrived (for at most a second), then give up a partial file.
      let deadline = monotonicNanos() + 1_000_000_000
      while !context.isAborted, monotonicNanos() < deadline, var message = try data.tryReceiveMultipart() {
        if case .file(let frame) = client.accept(&message), !context.emit(consume frame) { return }
      }
      client.finish()
      context.emit(.seriesEnd(1, id: client.nextID(), frames: client.frames))
    }

    private func sendRequest(_ command: String, _ target: String, on socket: borrowing Socket) throws {
      var message = MultipartMessage(minimumCapacity: 2)
      message.append(command)
      message.append(target)
      // Not connected yet or full: the request is lost; the next refresh sends it again.
      _ = try socket.trySend(&message)
    }
  }

  /// Reassembles files from HiDRA data messages `[metadata JSON, chunk]`, one
  /// file at a time, by the Transfer API's completion rule, and counts what it
  /// has to drop.
  struct Client {
    enum Outcome {
      /// A complete file.
      case file(Frame)
      /// A file was lost (counted).
      case lost
      /// A chunk that neither completes nor loses a file.
      case pending

      var endsFile: Bool {
        if case .pending = self { return false }
        return true
      }
    }

    struct Partial {
      var name: String
      var chunkSize: Int
      var filesize: Int?
      var modTime: Double?
      var next: Int
      var parts: [Payload]
      var bytes: Int
    }

    let context: StageContext
    let maxFile: Int
    var partial: Partial?
    /// The file last given up, so its later chunks are not counted again.
    var lostName: String?
    var frames = 0
    var id: UInt64 = 0

    init(context: StageContext, maxFile: Int) {
      self.context = context
      self.maxFile = maxFile
    }

    mutating func nextID() -> UInt64 {
      id += 1
      return id
    }

    mutating func accept(_ message: inout MultipartMessage) -> Outcome {
      guard message.count == 2 else {
        return reject("bad-message", "a data message of \(message.count) parts, expected 2", name: nil)
      }
      let object = message.withPart(at: 0) { part -> [String: Any]? in
        guard part.count <= 64 << 10 else { return nil }
        return part.withUnsafeBytes { (try? JSONSerialization.jsonObject(with: Data($0))) as? [String: Any] }
      }
      guard let object, let relative = object["relative_path"] as? String,
        let filename = object["filename"] as? String
      else {
        return reject(
          "bad-metadata", "metadata that is not a JSON object with relative_path and filename", name: nil)
      }
      let joined = relative.isEmpty ? filename : relative + "/" + filename
      guard let (cleanRelative, cleanName) = HidraTransfer.splitName(joined), !filename.contains("/") else {
        return reject(
          "unsafe-name", "file name '\(joined.prefix(128))' is not a safe relative path", name: joined)
      }
      let name = cleanRelative.isEmpty ? cleanName : cleanRelative + "/" + cleanName
      guard let chunkNumber = HidraTransfer.jsonInteger(object["chunk_number"]), chunkNumber >= 0 else {
        return reject(
          "bad-chunk", "'\(name)': a message without chunk_number (a metadata message?)", name: name)
      }
      guard let chunkSize = HidraTransfer.jsonInteger(object["chunksize"]), chunkSize > 0 else {
        return reject("bad-chunk", "'\(name)': chunksize missing or not positive", name: name)
      }
      let filesize = HidraTransfer.jsonInteger(object["filesize"])
      if let filesize, filesize < 0 { return reject("bad-chunk", "'\(name)': negative filesize", name: name) }
      let chunkBytes = message.withPart(at: 1) { $0.count }
      guard chunkBytes <= chunkSize else {
        return reject("bad-chunk", "'\(name)': chunk \(chunkNumber) is larger than chunksize", name: name)
      }
      if chunkNumber == 0 {
        if let partial {
          context.reportError("incomplete", "'\(partial.name)' was not complete when '\(name)' began")
        }
        lostName = nil
        partial = Partial(
          name: name, chunkSize: chunkSize, filesize: filesize,
          modTime: HidraTransfer.jsonNumber(object["file_mod_time"]),
          next: 0, parts: [], bytes: 0)
      } else {
        guard var current = partial, current.name == name, current.next == chunkNumber,
          current.chunkSize == chunkSize
        else {
          if lostName == name, partial == nil { return .pending }  // the rest of a file already counted
          return reject("bad-chunk", "'\(name)': chunk \(chunkNumber) out of order", name: name)
        }
        if current.filesize == nil { current.filesize = filesize }
        partial = current
      }
      guard var current = partial else { return .pending }
      current.bytes += chunkBytes
      current.next += 1
      if current.bytes > maxFile {
        return reject("oversized", "'\(name)' is larger than max_file (\(maxFile) bytes)", name: name)
      }
      if let size = current.filesize, current.bytes > size {
        return reject("bad-size", "'\(name)' brings more bytes than its filesize \(size)", name: name)
      }
      let payload = message.remove(at: 1)
      if !payload.isEmpty { current.parts.append(WireAssembler.adopt(payload)) }
      let complete: Bool
      if chunkBytes < chunkSize {
        complete = true
      } else if let size = current.filesize {
        complete = size % chunkSize == 0 && size / chunkSize == chunkNumber + 1
      } else {
        return reject("bad-chunk", "'\(name)': a full chunk without filesize", name: name)
      }
      guard complete else {
        partial = current
        return .pending
      }
      partial = nil
      if let size = current.filesize, size != current.bytes {
        return reject(
          "bad-size", "'\(name)' has \(current.bytes) bytes, its filesize says \(size)", name: name)
      }
      var attributes = ["size": String(current.bytes)]
      if let modTime = current.modTime, modTime.isFinite, modTime >= 0, modTime < 1e10 {
        attributes["mtime_ns"] = String(UInt64(modTime * 1e9))
      }
      let meta = FrameMeta(
        id: nextID(), series: 1, frame: frames, name: current.name, createdNanos: wallNanos(),
        attributes: attributes)
      frames += 1
      return .file(Frame(kind: .data, meta: meta, parts: current.parts))
    }

    /// Counts a problem once per file, drops the file being assembled.
    private mutating func reject(_ kind: String, _ message: String, name: String?) -> Outcome {
      let dropped = partial != nil
      partial = nil
      if let name, lostName == name, !dropped { return .pending }  // the rest of a file already counted
      context.reportError(kind, message)
      lostName = name
      return .lost
    }

    mutating func finish() {
      if let partial { context.reportError("incomplete", "'\(partial.name)' was not complete at the end") }
      partial = nil
    }
  }
}
