import AsyncHTTPClient
import Foundation
import HidraRuntime
import NIOCore
import NIOHTTP1
import Synchronization

/// Items that other threads (NIO's event loops, a `Ledger`'s completion) hand
/// to one stage thread, which takes them when it is ready, waiting at most a
/// given time so it keeps noticing a stop.
///
/// `@unchecked Sendable`: `items` is only read or written with `condition` locked.
final class Mailbox<Item: Sendable>: @unchecked Sendable {
  private let condition = NSCondition()
  private var items: [Item] = []

  func post(_ item: Item) {
    condition.lock()
    items.append(item)
    condition.signal()
    condition.unlock()
  }

  /// Takes everything posted so far; when nothing is, waits until something is
  /// or `seconds` have passed.
  func take(waiting seconds: Double = 0) -> [Item] {
    condition.lock()
    defer { condition.unlock() }
    if items.isEmpty, seconds > 0 { _ = condition.wait(until: Date(timeIntervalSinceNow: seconds)) }
    let taken = items
    items.removeAll()
    return taken
  }
}

/// Why an HTTP request gave no usable answer (the text is for the log).
struct HTTPFailure: Error, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}

/// AsyncHTTPClient used from a stage's own thread.
///
/// A request runs on NIO's event loops; the stage thread waits for its result
/// on a `Mailbox` in slices of 100 ms, and cancels the request when
/// `cancelWhen` says so (the run stops or is aborted) or when the deadline
/// passes. Nothing blocks an event loop, and no state is shared but the
/// mailbox, so this is sound under strict concurrency.
final class StageHTTP {
  let client: HTTPClient

  init(connectTimeout: TimeAmount = .seconds(5), readTimeout: TimeAmount = .seconds(30)) {
    var configuration = HTTPClient.Configuration(
      redirectConfiguration: .disallow, timeout: .init(connect: connectTimeout, read: readTimeout))
    configuration.httpVersion = .http1Only
    client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
  }

  /// Closes the client's connections; call once, from the stage thread, when done.
  func shutdown() { try? client.syncShutdown() }

  /// Starts a request; `done` runs on an event loop with its result.
  func start<Delegate: HTTPClientResponseDelegate>(
    _ url: String, method: HTTPMethod, delegate: Delegate, timeout: TimeAmount,
    done: @escaping @Sendable (Result<Delegate.Response, any Error>) -> Void
  ) -> HTTPClient.Task<Delegate.Response>? {
    let request: HTTPClient.Request
    do {
      request = try HTTPClient.Request(url: url, method: method)
    } catch {
      done(.failure(HTTPFailure("invalid URL '\(url)': \(error)")))
      return nil
    }
    let task = client.execute(request: request, delegate: delegate, deadline: .now() + timeout)
    task.futureResult.whenComplete { done($0) }
    return task
  }

  /// Runs one request and waits for its result on the calling (stage) thread.
  func perform<Delegate: HTTPClientResponseDelegate>(
    _ url: String, method: HTTPMethod = .GET, delegate: Delegate, timeout: TimeAmount = .seconds(30),
    cancelWhen: () -> Bool
  ) -> Result<Delegate.Response, any Error> {
    let mailbox = Mailbox<Result<Delegate.Response, any Error>>()
    let task = start(url, method: method, delegate: delegate, timeout: timeout) { mailbox.post($0) }
    var cancelled = false
    while true {
      if let result = mailbox.take(waiting: 0.1).first {
        return cancelled ? .failure(HTTPFailure("cancelled: the run is stopping")) : result
      }
      if !cancelled, cancelWhen() {
        cancelled = true
        task?.cancel()  // the task then completes at once with an error
      }
    }
  }

  /// A small answer (status and body) read whole, at most `maxBody` bytes.
  func fetch(
    _ url: String, method: HTTPMethod = .GET, maxBody: Int = 16 << 20, timeout: TimeAmount = .seconds(30),
    cancelWhen: () -> Bool
  ) -> Result<HTTPClient.Response, any Error> {
    guard let request = try? HTTPClient.Request(url: url, method: method) else {
      return .failure(HTTPFailure("invalid URL '\(url)'"))
    }
    return perform(
      url, method: method, delegate: ResponseAccumulator(request: request, maxBodySize: maxBody),
      timeout: timeout, cancelWhen: cancelWhen)
  }

  /// `{base}/{path}` with every path component percent-encoded (slashes kept).
  static func url(_ base: String, _ path: String) -> String {
    let allowed = CharacterSet.urlPathAllowed.subtracting(CharacterSet(charactersIn: "/?#;"))
    let encoded = path.split(separator: "/", omittingEmptySubsequences: false).map {
      String($0).addingPercentEncoding(withAllowedCharacters: allowed) ?? String($0)
    }
    return base + "/" + encoded.joined(separator: "/")
  }

  /// The detector's address without a trailing slash.
  static func base(_ url: String) -> String {
    var base = url
    while base.hasSuffix("/") { base.removeLast() }
    return base
  }

  /// A short description of a non-2xx answer, with the start of its body.
  static func describe(_ response: HTTPClient.Response) -> String {
    var text = "HTTP \(response.status.code) \(response.status.reasonPhrase)"
    if var body = response.body, body.readableBytes > 0 {
      let message = body.readString(length: min(body.readableBytes, 200)) ?? ""
      let line = message.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
      if !line.isEmpty { text += ": \(line)" }
    }
    return text
  }
}

/// SIMPLON answers: a parameter is `{"value": V, "value_type": ..., ...}`; some
/// firmware answers a bare value. Lists (the file writer's `files`) come bare
/// or wrapped the same way.
enum SimplonValue {
  /// The `value` of a SIMPLON parameter answer (or the bare JSON value).
  static func value(_ body: ByteBuffer?) -> Any? {
    guard let body, body.readableBytes > 0 else { return nil }
    let data = Data(body.readableBytesView)
    guard let object = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) else {
      return nil
    }
    if let wrapped = object as? [String: Any] { return wrapped["value"] }
    return object
  }

  /// A scalar value as attribute text (nil for lists, objects and null).
  static func text(_ value: Any?) -> String? { EigerStreamSource.Body.text(value) }
}

/// Downloads a response body into payloads of at most `chunkSize` bytes.
///
/// Runs on an event loop. Received buffers are kept until they add up to one
/// chunk, then copied once into a pooled payload (`Payload(count:fill:)`), so
/// the download holds the file's bytes once plus at most one chunk in NIO's
/// buffers, and the frame's parts are chunk-sized as the directory source makes
/// them. The body of a non-200 answer is kept only for the error message.
final class DownloadDelegate: HTTPClientResponseDelegate {
  struct Download: Sendable {
    var status: HTTPResponseStatus = .ok
    var parts: [Payload] = []
    var bytes = 0
    /// `Content-Length`, when the server sent it.
    var expected: Int?
    var lastModified: String?
    /// The start of the body of an answer other than 200.
    var errorText = ""
  }
  typealias Response = Download

  private struct State {
    var download = Download()
    var pending: [ByteBuffer] = []
    var pendingBytes = 0
  }

  let chunkSize: Int
  private let state = Mutex(State())

  init(chunkSize: Int) { self.chunkSize = chunkSize }

  func didReceiveHead(task: HTTPClient.Task<Download>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
    state.withLock { state in
      state.download.status = head.status
      state.download.expected = head.headers.first(name: "content-length").flatMap { Int($0) }
      state.download.lastModified = head.headers.first(name: "last-modified")
    }
    return task.eventLoop.makeSucceededVoidFuture()
  }

  func didReceiveBodyPart(task: HTTPClient.Task<Download>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
    state.withLock { state in
      guard state.download.status == .ok else {
        if state.download.errorText.utf8.count < 200 {
          state.download.errorText += String(buffer: buffer).prefix(200)
        }
        return
      }
      var buffer = buffer
      while buffer.readableBytes > 0 {
        let take = min(buffer.readableBytes, chunkSize - state.pendingBytes)
        state.pending.append(buffer.readSlice(length: take)!)
        state.pendingBytes += take
        if state.pendingBytes == chunkSize { Self.flush(&state) }
      }
    }
    return task.eventLoop.makeSucceededVoidFuture()
  }

  func didReceiveError(task: HTTPClient.Task<Download>, _ error: any Error) {
    state.withLock { state in
      state.pending.removeAll()
      state.download.parts.removeAll()
    }
  }

  func didFinishRequest(task: HTTPClient.Task<Download>) throws -> Download {
    state.withLock { state in
      if state.pendingBytes > 0 { Self.flush(&state) }
      return state.download
    }
  }

  /// Copies the pending buffers into one payload.
  private static func flush(_ state: inout State) {
    let buffers = state.pending
    state.download.parts.append(
      Payload(count: state.pendingBytes) { target in
        var offset = 0
        for buffer in buffers {
          buffer.withUnsafeReadableBytes { source in
            UnsafeMutableRawBufferPointer(rebasing: target[offset..<(offset + source.count)]).copyMemory(
              from: source)
            offset += source.count
          }
        }
      })
    state.download.bytes += state.pendingBytes
    state.pending.removeAll(keepingCapacity: true)
    state.pendingBytes = 0
  }
}
