import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A test-only SIMPLON REST server of a fake detector control unit, on
/// 127.0.0.1 with a port the system picks: the file writer (`files`, `/data/<name>`
/// with HEAD, GET streamed in 64 KiB writes with a correct Content-Length, and
/// DELETE) and the stream interface's status and config. Written from the SIMPLON
/// API description: parameters answer `{"value": V, "value_type": T}`, the file
/// list is a bare JSON list (or wrapped as a parameter, as some firmware does).
///
/// Tests change what it serves and inject failures through `state`.
final class FakeSimplon: Sendable {
  struct File {
    var name: String
    var bytes: [UInt8]
    var modified: String
  }

  struct State {
    /// Listed in this order.
    var files: [File] = []
    /// Every request as "METHOD /path", in order.
    var requests: [String] = []
    var deleted: [String] = []
    /// Statuses to answer instead, once each, keyed by "METHOD /path".
    var failures: [String: [Int]] = [:]
    /// Listings to answer with a body that is not JSON.
    var garbageListings = 0
    /// Names whose next download stops half-way (the connection closes).
    var truncate: Set<String> = []
    /// Answer the file list as a SIMPLON parameter, `{"value": [...]}`.
    var wrappedList = false
    /// The stream interface's parameters, by path below `/stream/api/<version>/`.
    var stream: [String: String] = [
      "status/state": "ready", "config/mode": "enabled", "config/format": "legacy",
      "config/header_detail": "all", "status/dropped": "0",
    ]
    /// Called (on the server's thread) for each DELETE before it is answered.
    var onDelete: (@Sendable (String) -> Void)?
  }

  let state = Mutex(State())
  let apiVersion = "1.8.0"
  private let group: MultiThreadedEventLoopGroup
  private let channel: any Channel
  let port: Int
  var url: String { "http://127.0.0.1:\(port)" }

  init() throws {
    group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let box = ServerBox()
    let bootstrap = ServerBootstrap(group: group)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          guard let server = box.server else { throw ChannelError.ioOnClosedChannel }
          try channel.pipeline.syncOperations.configureHTTPServerPipeline()
          try channel.pipeline.syncOperations.addHandler(Handler(server))
        }
      }
    channel = try bootstrap.bind(host: "127.0.0.1", port: 0).wait()
    port = channel.localAddress?.port ?? 0
    box.server = self
  }

  /// Lets the child initializer reach the server once it exists.
  private final class ServerBox: @unchecked Sendable {
    // @unchecked Sendable: written once in `init` before any connection is accepted.
    weak var server: FakeSimplon?
  }

  func stop() {
    try? channel.close().wait()
    try? group.syncShutdownGracefully()
  }

  // MARK: - What tests use

  func add(_ name: String, _ bytes: [UInt8], modified: String = "Mon, 24 Nov 2025 10:00:00 GMT") {
    state.withLock { state in
      state.files.removeAll { $0.name == name }
      state.files.append(File(name: name, bytes: bytes, modified: modified))
    }
  }

  func remove(_ name: String) { state.withLock { $0.files.removeAll { $0.name == name } } }

  var requests: [String] { state.withLock { $0.requests } }
  var deleted: [String] { state.withLock { $0.deleted } }
  var listings: Int { state.withLock { $0.requests.count { $0.hasPrefix("GET /filewriter/") } } }
  func count(_ request: String) -> Int { state.withLock { $0.requests.count { $0 == request } } }

  /// Deterministic bytes of a file.
  static func content(_ seed: Int, size: Int) -> [UInt8] {
    (0..<size).map { UInt8(truncatingIfNeeded: seed &* 7919 &+ $0 &* 31 &+ $0 >> 11) }
  }

  // MARK: - Answers

  enum Answer {
    case json(Int, String)
    case text(Int, String)
    case file(File, head: Bool, truncate: Bool)
  }

  func answer(_ method: HTTPMethod, _ rawPath: String) -> Answer {
    let path = rawPath.split(separator: "?", maxSplits: 1).first.map(String.init) ?? rawPath
    let key = "\(method.rawValue) \(path)"
    return state.withLock { state -> Answer in
      state.requests.append(key)
      if var statuses = state.failures[key], !statuses.isEmpty {
        let status = statuses.removeFirst()
        state.failures[key] = statuses
        return .text(status, "injected failure")
      }
      if path.hasPrefix("/data/") {
        let name = String(path.dropFirst(6)).removingPercentEncoding ?? ""
        guard let index = state.files.firstIndex(where: { $0.name == name }) else {
          return .text(404, "not found")
        }
        switch method {
        case .DELETE:
          state.onDelete?(name)
          state.files.remove(at: index)
          state.deleted.append(name)
          return .json(200, "[]")
        case .GET, .HEAD:
          let truncate = method == .GET && state.truncate.remove(name) != nil
          return .file(state.files[index], head: method == .HEAD, truncate: truncate)
        default:
          return .text(405, "method not allowed")
        }
      }
      let parts = path.split(separator: "/").map(String.init)
      guard parts.count >= 4, parts[1] == "api", method == .GET else { return .text(404, "not found") }
      guard parts[2] == apiVersion else { return .text(400, "Incompatible version") }
      let key = parts[3...].joined(separator: "/")
      switch parts[0] {
      case "filewriter" where key == "files":
        if state.garbageListings > 0 {
          state.garbageListings -= 1
          return .json(200, "<html>not a list</html>")
        }
        let names = state.files.map { "\"\($0.name)\"" }.joined(separator: ",")
        return .json(200, state.wrappedList ? "{\"access_mode\":\"r\",\"value\":[\(names)]}" : "[\(names)]")
      case "stream":
        guard let value = state.stream[key] else { return .text(404, "Parameter \(key) does not exist") }
        let json = Int(value) != nil ? value : "\"\(value)\""
        let type = Int(value) != nil ? "uint" : "string"
        return .json(200, "{\"value\":\(json),\"value_type\":\"\(type)\",\"access_mode\":\"r\"}")
      default:
        return .text(404, "not found")
      }
    }
  }

  /// One connection's HTTP/1.1 handler (on the server's event loop).
  final class Handler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let server: FakeSimplon
    var head: HTTPRequestHead?

    init(_ server: FakeSimplon) { self.server = server }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
      switch unwrapInboundIn(data) {
      case .head(let head): self.head = head
      case .body: break
      case .end:
        guard let head else { return }
        respond(server.answer(head.method, head.uri), context)
      }
    }

    func respond(_ answer: Answer, _ context: ChannelHandlerContext) {
      switch answer {
      case .json(let status, let body), .text(let status, let body):
        var headers = HTTPHeaders()
        if case .json = answer { headers.add(name: "Content-Type", value: "application/json") }
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        context.write(
          wrapOutboundOut(
            .head(HTTPResponseHead(version: .http1_1, status: .init(statusCode: status), headers: headers))),
          promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
      case .file(let file, let head, let truncate):
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/octet-stream")
        headers.add(name: "Content-Length", value: String(file.bytes.count))
        headers.add(name: "Last-Modified", value: file.modified)
        context.write(
          wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))),
          promise: nil)
        if head {
          context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        } else {
          stream(
            file.bytes, from: 0, limit: truncate ? file.bytes.count / 2 : file.bytes.count, truncate, context)
        }
      }
    }

    /// Writes the body 64 KiB at a time, each write after the previous one left.
    func stream(
      _ bytes: [UInt8], from offset: Int, limit: Int, _ truncate: Bool, _ context: ChannelHandlerContext
    ) {
      let end = min(offset + (64 << 10), limit)
      let written = context.writeAndFlush(
        wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: bytes[offset..<end])))))
      written.assumeIsolated().whenComplete { result in
        guard case .success = result else { return }
        if end < limit {
          self.stream(bytes, from: end, limit: limit, truncate, context)
        } else if truncate {
          context.close(promise: nil)
        } else {
          context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        }
      }
    }
  }
}
