import Foundation
import HidraCodec
import HidraGraph
import HidraRuntime
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// Counts and logs the problems a monitor's server threads meet (bad requests,
/// images that do not decode): `StageContext.reportError` belongs to the stage's
/// thread, so the server has its own, on the same counter.
final class MonitorErrors: Sendable {
  let node: String
  let counters: NodeCounters
  private let kinds = Mutex<[String: Int]>([:])

  init(node: String, counters: NodeCounters) {
    self.node = node
    self.counters = counters
  }

  func report(_ kind: String, _ message: String) {
    counters.errors.add(1, ordering: .relaxed)
    let seen = kinds.withLock { kinds in
      defer { kinds[kind, default: 0] += 1 }
      return kinds[kind, default: 0]
    }
    if seen < 3 {
      Log.warning("\(node): \(message)\(seen == 2 ? " (further '\(kind)' errors are only counted)" : "")")
    }
  }

  /// How many of `kind` were reported.
  func count(_ kind: String) -> Int { kinds.withLock { $0[kind, default: 0] } }
}

/// One HTTP response, whole.
struct MonitorResponse: Sendable {
  var status: HTTPResponseStatus
  var contentType = "application/json; charset=utf-8"
  var body: ByteBuffer
  var headers: [(String, String)] = []
  /// Close the connection after it (the request was not read to its end).
  var close = false
  /// The body's memory may be reused once it is sent (a TIFF no one else holds).
  var recyclable = false

  static func json(_ status: HTTPResponseStatus, _ text: String) -> MonitorResponse {
    MonitorResponse(status: status, body: ByteBuffer(string: text))
  }

  /// An error: `{"error": "..."}`.
  static func error(_ status: HTTPResponseStatus, _ message: String) -> MonitorResponse {
    json(status, "{\"error\": \(MonitorAPI.quote(message))}")
  }
}

/// The SIMPLON monitor API over a `MonitorBuffer`: routing, JSON bodies and
/// TIFF making. Shared by every connection; `respond` runs on the connection's
/// event loop and moves decoding to the thread pool.
final class MonitorAPI: Sendable {
  let buffer: MonitorBuffer
  let version: String
  let prefix: String
  let pool: NIOThreadPool
  let errors: MonitorErrors
  let counters: NodeCounters
  /// Requests whose response is not written yet (a drain waits for them).
  let inFlight = Atomic<Int>(0)
  /// Buffers of sent TIFFs, kept for the next ones: a fresh multi-megabyte
  /// buffer costs its page faults (zeroed pages) on every request.
  private let spares = Mutex<[ByteBuffer]>([])
  /// At most this many bytes of spare buffers are kept.
  static let maxSpareBytes = 64 << 20

  /// Largest request body read; larger ones get 413.
  static let maxBody = 64 << 10
  /// Longest `images/monitor?timeout=` wait honoured, in milliseconds.
  static let maxWaitMillis = 60_000

  init(
    buffer: MonitorBuffer, version: String, pool: NIOThreadPool, errors: MonitorErrors, counters: NodeCounters
  ) {
    self.buffer = buffer
    self.version = version
    self.prefix = "/monitor/api/\(version)/"
    self.pool = pool
    self.errors = errors
    self.counters = counters
  }

  /// The resources, with the methods each takes.
  enum Route: Equatable {
    case mode, discardNew, bufferSize, configKeys
    case next, monitor, list, image(series: Int, frame: Int)
    case clear, initialize
    case state, fillLevel, dropped, error, statusKeys

    var methods: [HTTPMethod] {
      switch self {
      case .mode, .discardNew, .bufferSize: return [.GET, .PUT]
      case .clear, .initialize: return [.PUT]
      default: return [.GET]
      }
    }
  }

  static let configKeys = ["buffer_size", "discard_new", "mode"]
  static let statusKeys = ["buffer_fill_level", "dropped", "error", "state"]

  /// The route of a path below the prefix (`config/mode`, `images/3/17`, ...).
  static func route(_ path: Substring) -> Route? {
    let parts = path.split(separator: "/", omittingEmptySubsequences: false)
    switch parts.map(String.init) {
    case ["config", "mode"]: return .mode
    case ["config", "discard_new"]: return .discardNew
    case ["config", "buffer_size"]: return .bufferSize
    case ["config", "keys"]: return .configKeys
    case ["images", "next"]: return .next
    case ["images", "monitor"]: return .monitor
    case ["images"]: return .list
    case ["command", "clear"]: return .clear
    case ["command", "initialize"]: return .initialize
    case ["status", "state"]: return .state
    case ["status", "buffer_fill_level"]: return .fillLevel
    case ["status", "dropped"]: return .dropped
    case ["status", "error"]: return .error
    case ["status", "keys"]: return .statusKeys
    case let parts where parts.count == 3 && parts[0] == "images":
      guard let series = Int(parts[1]), let frame = Int(parts[2]) else { return nil }
      return .image(series: series, frame: frame)
    default: return nil
    }
  }

  /// Answers one request (its body already read, at most `maxBody` bytes).
  func respond(to head: HTTPRequestHead, body: ByteBuffer?, on eventLoop: any EventLoop) -> EventLoopFuture<
    MonitorResponse
  > {
    let uri = head.uri
    let path = uri.prefix { $0 != "?" }
    let query = uri.dropFirst(path.count + 1)
    guard path.hasPrefix(prefix) else {
      let message =
        path.hasPrefix("/monitor/api/")
        ? "this monitor serves API version \(version): \(prefix)..., not \(path)"
        : "no such resource: \(path) (the monitor is under \(prefix))"
      return eventLoop.makeSucceededFuture(bad(.notFound, "not-found", message))
    }
    var rest = path.dropFirst(prefix.count)
    while rest.hasSuffix("/") { rest = rest.dropLast() }
    guard let route = Self.route(rest) else {
      return eventLoop.makeSucceededFuture(bad(.notFound, "not-found", "no such resource: \(path)"))
    }
    guard route.methods.contains(head.method) else {
      var response = bad(
        .methodNotAllowed, "bad-method",
        "\(head.method.rawValue) \(path): allowed \(route.methods.map(\.rawValue).joined(separator: ", "))")
      response.headers.append(("Allow", route.methods.map(\.rawValue).joined(separator: ", ")))
      return eventLoop.makeSucceededFuture(response)
    }
    if head.method == .PUT {
      return eventLoop.makeSucceededFuture(put(route, body: body, path: path))
    }
    switch route {
    case .next:
      return serve(on: eventLoop) { [buffer] in buffer.next() }
    case .monitor:
      guard let millis = Self.timeout(query) else {
        return eventLoop.makeSucceededFuture(
          bad(.badRequest, "bad-query", "images/monitor: 'timeout' must be milliseconds, got '\(query)'"))
      }
      return buffer.newest(on: eventLoop, waiting: .milliseconds(Int64(min(millis, Self.maxWaitMillis))))
        .flatMap { [self] image in
          guard let image else { return eventLoop.makeSucceededFuture(Self.noImage) }
          return serve(on: eventLoop, cache: true) { image }
        }
    case .image(let series, let frame):
      guard let image = buffer.image(series: series, frame: frame) else {
        return eventLoop.makeSucceededFuture(
          .error(.notFound, "image \(series)/\(frame) is not in the monitor's buffer"))
      }
      return serve(on: eventLoop, cache: true) { image }
    default:
      return eventLoop.makeSucceededFuture(get(route))
    }
  }

  /// 408 at once: what OnDA expects when no image is ready.
  static let noImage = MonitorResponse.error(.requestTimeout, "no image")

  /// A client error: counted, logged (the first few), and answered.
  func bad(_ status: HTTPResponseStatus, _ kind: String, _ message: String) -> MonitorResponse {
    errors.report(kind, "HTTP \(status.code): \(message)")
    return .error(status, message)
  }

  /// `timeout=MS` from a query string (absent: 0).
  static func timeout(_ query: Substring) -> Int? {
    var millis = 0
    for pair in query.split(separator: "&") {
      let (key, value) = (pair.prefix { $0 != "=" }, pair.drop { $0 != "=" }.dropFirst())
      guard key == "timeout" else { continue }
      guard let number = Int(value), number >= 0 else { return nil }
      millis = number
    }
    return millis
  }

  /// Makes the TIFF of the image `take` gives, on the thread pool; 408 when
  /// there is none. An image that does not decode is counted and noted, and
  /// (for `images/next`) the next one is tried.
  func serve(
    on eventLoop: any EventLoop, cache: Bool = false, _ take: @escaping @Sendable () -> MonitorImage?
  )
    -> EventLoopFuture<MonitorResponse>
  {
    pool.runIfActive(eventLoop: eventLoop) { [self] () -> MonitorResponse in
      while let image = take() {
        if cache, let tiff = buffer.cachedTIFF(for: image.id) { return served(tiff) }
        do {
          let tiff = try image.tiff(
            reusing: cache ? nil : spare(atLeast: TIFF.headerSize + image.layout.pixelBytes))
          if cache { buffer.cache(tiff, for: image.id) }
          var response = served(tiff)
          response.recyclable = !cache
          return response
        } catch {
          let message = "image \(image.series)/\(image.frame) does not decode: \(error)"
          errors.report("bad-image", message)
          buffer.noteError(message)
          if cache { return .error(.internalServerError, message) }
        }
      }
      return Self.noImage
    }
  }

  /// The smallest spare buffer of at least `capacity` bytes, if one is kept.
  func spare(atLeast capacity: Int) -> ByteBuffer? {
    spares.withLock { spares in
      // Largest first: the last that fits is the smallest.
      guard let index = spares.lastIndex(where: { $0.capacity >= capacity }) else { return nil }
      return spares.remove(at: index)
    }
  }

  /// Keeps the buffer of a sent TIFF for reuse (the largest ones, up to `maxSpareBytes`).
  func recycle(_ buffer: ByteBuffer) {
    spares.withLock { spares in
      spares.append(buffer)
      spares.sort { $0.capacity > $1.capacity }
      var total = 0
      spares = spares.filter { spare in
        total += spare.capacity
        return total <= Self.maxSpareBytes
      }
    }
  }

  func served(_ tiff: ByteBuffer) -> MonitorResponse {
    counters.framesOut.add(1, ordering: .relaxed)
    counters.bytesOut.add(tiff.readableBytes, ordering: .relaxed)
    return MonitorResponse(status: .ok, contentType: "application/tiff", body: tiff)
  }

  // MARK: - Values

  func get(_ route: Route) -> MonitorResponse {
    let status = buffer.status
    let config = status.config
    switch route {
    case .mode:
      return .json(
        .ok,
        Self.value(
          Self.quote(config.enabled ? "enabled" : "disabled"), type: "string", access: "rw",
          allowed: ["enabled", "disabled"]))
    case .discardNew:
      return .json(.ok, Self.value(config.discardNew ? "true" : "false", type: "bool", access: "rw"))
    case .bufferSize:
      return .json(
        .ok, Self.value(String(config.size), type: "uint", access: "rw", min: 1, max: MonitorBuffer.maxSize))
    case .configKeys: return .json(.ok, Self.value(Self.list(Self.configKeys), type: "string[]", access: "r"))
    case .statusKeys: return .json(.ok, Self.value(Self.list(Self.statusKeys), type: "string[]", access: "r"))
    case .state:
      let state = status.count >= config.size ? "overflow" : "normal"
      return .json(
        .ok, Self.value(Self.quote(state), type: "string", access: "r", allowed: ["normal", "overflow"]))
    case .fillLevel: return .json(.ok, Self.value(String(status.count), type: "uint", access: "r"))
    case .dropped: return .json(.ok, Self.value(String(status.dropped), type: "uint", access: "r"))
    case .error: return .json(.ok, Self.value(Self.list(status.errors), type: "string[]", access: "r"))
    case .list:
      let pairs = buffer.list().map { "[\($0[0]), \($0[1])]" }.joined(separator: ", ")
      return .json(.ok, "[\(pairs)]")
    default: return .error(.internalServerError, "no value for \(route)")
    }
  }

  /// A PUT: a configuration value `{"value": ...}` or a command. Answers 200
  /// (OnDA takes anything else, 204 included, as a failure) with the changed keys.
  func put(_ route: Route, body: ByteBuffer?, path: Substring) -> MonitorResponse {
    switch route {
    case .clear:
      buffer.clear()
      return .json(.ok, "[]")
    case .initialize:
      buffer.initialize()
      return .json(.ok, "[]")
    default: break
    }
    let value: Any
    switch Self.value(of: body) {
    case .success(let found): value = found
    case .failure(let problem): return bad(.badRequest, "bad-json", "PUT \(path): \(problem.message)")
    }
    switch route {
    case .mode:
      guard let mode = value as? String, ["enabled", "disabled"].contains(mode) else {
        return bad(.badRequest, "bad-value", "PUT \(path): 'value' must be \"enabled\" or \"disabled\"")
      }
      buffer.configure { $0.enabled = mode == "enabled" }
      return .json(.ok, "[\"mode\"]")
    case .discardNew:
      guard let flag = Self.boolean(value) else {
        return bad(.badRequest, "bad-value", "PUT \(path): 'value' must be true or false")
      }
      buffer.configure { $0.discardNew = flag }
      return .json(.ok, "[\"discard_new\"]")
    case .bufferSize:
      guard let size = Self.integer(value), (1...MonitorBuffer.maxSize).contains(size) else {
        return bad(
          .badRequest, "bad-value",
          "PUT \(path): 'value' must be an integer from 1 to \(MonitorBuffer.maxSize)")
      }
      buffer.configure { $0.size = size }
      return .json(.ok, "[\"buffer_size\"]")
    default:
      return .error(.internalServerError, "no PUT for \(route)")
    }
  }

  struct BodyProblem: Error {
    var message: String
  }

  /// The `value` of a JSON body `{"value": ...}`.
  static func value(of body: ByteBuffer?) -> Result<Any, BodyProblem> {
    guard let body, body.readableBytes > 0 else { return .failure(BodyProblem(message: "no JSON body")) }
    let data = Data(body.readableBytesView)
    guard let object = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) else {
      return .failure(BodyProblem(message: "the body is not JSON"))
    }
    guard let map = object as? [String: Any] else {
      return .failure(BodyProblem(message: "the body is not a JSON object {\"value\": ...}"))
    }
    guard let value = map["value"] else { return .failure(BodyProblem(message: "the body has no 'value'")) }
    return .success(value)
  }

  /// A JSON boolean, and nothing else (Foundation also reads numbers as booleans).
  static func boolean(_ value: Any) -> Bool? {
    guard let number = value as? NSNumber, ["c", "B"].contains(String(cString: number.objCType)) else {
      return nil
    }
    return number.boolValue
  }

  /// A JSON integer, and nothing else (not a boolean or a float).
  static func integer(_ value: Any) -> Int? {
    guard let number = value as? NSNumber else { return nil }
    switch String(cString: number.objCType) {
    case "c", "B", "d", "f": return nil
    default: return value as? Int
    }
  }

  /// `{"value": V, "value_type": T, "access_mode": A, ...}` as the detector answers.
  static func value(
    _ json: String, type: String, access: String, allowed: [String]? = nil, min: Int? = nil, max: Int? = nil
  ) -> String {
    var fields = [
      "\"value\": \(json)", "\"value_type\": \(quote(type))", "\"access_mode\": \(quote(access))",
    ]
    if let allowed { fields.append("\"allowed_values\": \(list(allowed))") }
    if let min { fields.append("\"min\": \(min)") }
    if let max { fields.append("\"max\": \(max)") }
    return "{" + fields.joined(separator: ", ") + "}"
  }

  static func list(_ strings: [String]) -> String { "[" + strings.map(quote).joined(separator: ", ") + "]" }

  /// A JSON string literal.
  static func quote(_ text: String) -> String { Rendering.quote(text) }
}

/// One connection: reads a request (head, body up to `MonitorAPI.maxBody`,
/// end), answers it, and goes on with the next (keep-alive) or closes.
/// Malformed HTTP gets 400 from NIO's protocol error handler and is counted here.
final class MonitorHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart

  private let api: MonitorAPI
  private var head: HTTPRequestHead?
  private var body: ByteBuffer?
  /// The request's body was too large: it was answered (413) and is discarded
  /// until its end, then the connection closes.
  private var refused = false
  /// Body bytes discarded after a 413; past `maxDiscard` the connection closes at once.
  private var discarded = 0
  private static let maxDiscard = 64 << 20
  /// A response is being made (an idle connection may be closed, a busy one not).
  private var busy = false

  init(api: MonitorAPI) { self.api = api }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(let head):
      self.head = head
      body = nil
      refused = false
      discarded = 0
      if let length = head.headers.first(name: "content-length").flatMap({ Int($0) }),
        length > MonitorAPI.maxBody
      {
        refuse(context, head, "\(length) bytes")
      }
    case .body(var chunk):
      guard let head else { return }
      if refused {
        discarded += chunk.readableBytes
        if discarded > Self.maxDiscard { context.close(promise: nil) }
        return
      }
      if (body?.readableBytes ?? 0) + chunk.readableBytes > MonitorAPI.maxBody {
        body = nil
        refuse(context, head, "more than \(MonitorAPI.maxBody) bytes")
        return
      }
      if body == nil { body = chunk } else { body!.writeBuffer(&chunk) }
    case .end:
      guard let head, !refused else {
        if refused { context.close(promise: nil) }
        self.head = nil
        return
      }
      let body = self.body
      self.head = nil
      self.body = nil
      busy = true
      api.inFlight.add(1, ordering: .relaxed)
      let response = api.respond(to: head, body: body, on: context.eventLoop)
      response.assumeIsolated().whenComplete { result in
        let answer: MonitorResponse
        switch result {
        case .success(let response): answer = response
        case .failure(let error): answer = .error(.serviceUnavailable, "the monitor is stopping (\(error))")
        }
        self.write(answer, for: head, context: context)
        self.api.inFlight.subtract(1, ordering: .relaxed)
      }
    }
  }

  /// Answers 413 before the body is read; the rest of it is discarded.
  private func refuse(_ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ size: String) {
    refused = true
    var response = api.bad(
      .payloadTooLarge, "too-large",
      "\(head.method.rawValue) \(head.uri): a body of \(size), at most \(MonitorAPI.maxBody)")
    response.close = true
    write(response, for: head, context: context, closeAfter: false)
  }

  private func write(
    _ response: MonitorResponse, for head: HTTPRequestHead, context: ChannelHandlerContext,
    closeAfter: Bool? = nil
  ) {
    let close = response.close || !head.isKeepAlive
    var headers = HTTPHeaders()
    headers.add(name: "Content-Type", value: response.contentType)
    headers.add(name: "Content-Length", value: String(response.body.readableBytes))
    for (name, value) in response.headers { headers.add(name: name, value: value) }
    if close {
      headers.add(name: "Connection", value: "close")
    } else if head.version.major == 1 && head.version.minor == 0 {
      headers.add(name: "Connection", value: "keep-alive")
    }
    let version = HTTPVersion(major: 1, minor: head.version.minor == 0 ? 0 : 1)
    context.write(
      wrapOutboundOut(.head(HTTPResponseHead(version: version, status: response.status, headers: headers))),
      promise: nil)
    if response.body.readableBytes > 0 {
      context.write(wrapOutboundOut(.body(.byteBuffer(response.body))), promise: nil)
    }
    busy = false
    let written = context.eventLoop.makePromise(of: Void.self)
    context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
    let recycle = response.recyclable ? response.body : nil
    let api = self.api
    written.futureResult.assumeIsolated().whenComplete { result in
      if case .success = result, let recycle { api.recycle(recycle) }
      if closeAfter ?? close { context.close(promise: nil) }
    }
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    if error is HTTPParserError {
      api.errors.report("bad-http", "malformed HTTP request: \(error)")
    }
    context.close(promise: nil)
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read, !busy {
      context.close(promise: nil)
      return
    }
    context.fireUserInboundEventTriggered(event)
  }
}

/// The HTTP server of a simplon-monitor forward: its own event loops and a
/// thread pool for decoding, started and stopped by the stage's thread.
final class MonitorServer {
  let group: MultiThreadedEventLoopGroup
  let pool: NIOThreadPool
  let channel: any Channel
  let api: MonitorAPI

  /// A connection that sends nothing for this long (and waits for no answer) is closed.
  static let idleTimeout = TimeAmount.seconds(120)

  /// Binds `host:port` (`*` is every interface) and starts serving.
  init(
    host: String, port: Int, buffer: MonitorBuffer, version: String, errors: MonitorErrors,
    counters: NodeCounters
  )
    throws
  {
    let threads = max(1, min(System.coreCount, 4))
    group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    pool = NIOThreadPool(numberOfThreads: threads)
    pool.start()
    let api = MonitorAPI(buffer: buffer, version: version, pool: pool, errors: errors, counters: counters)
    self.api = api
    let bootstrap = ServerBootstrap(group: group)
      .serverChannelOption(.backlog, value: 256)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
      .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          let handlers = channel.pipeline.syncOperations
          try handlers.addHandler(IdleStateHandler(readTimeout: Self.idleTimeout))
          try handlers.configureHTTPServerPipeline(withErrorHandling: true)
          try handlers.addHandler(MonitorHTTPHandler(api: api))
        }
      }
    do {
      channel = try bootstrap.bind(host: host == "*" ? "0.0.0.0" : host, port: port).wait()
    } catch {
      try? group.syncShutdownGracefully()
      try? pool.syncShutdownGracefully()
      throw NodeSetupError("cannot listen on http://\(host):\(port): \(error)")
    }
  }

  /// The port bound.
  var port: Int? { channel.localAddress?.port }

  /// Stops accepting, lets requests being answered finish (at most `drainSeconds`),
  /// then closes every connection and stops the threads.
  func stop(drainSeconds: Double) {
    api.buffer.close()
    try? channel.close().wait()
    let deadline = ContinuousClock.now.advanced(by: .milliseconds(Int64(drainSeconds * 1000)))
    while api.inFlight.load(ordering: .relaxed) > 0, ContinuousClock.now < deadline {
      Thread.sleep(forTimeInterval: 0.01)
    }
    try? group.syncShutdownGracefully()
    try? pool.syncShutdownGracefully()
  }
}
