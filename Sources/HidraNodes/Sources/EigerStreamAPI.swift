import AsyncHTTPClient
import HidraRuntime
import NIOCore

/// The `api:` of an `eiger-stream` source: the stream interface's status and
/// configuration read over SIMPLON REST, without ever holding up a frame.
///
/// `refresh()` starts one GET per parameter and returns at once; the answers
/// arrive on NIO's event loops and wait in a `Mailbox` until the stage thread
/// calls `collect` between messages. When every answer of a round is in, the
/// values replace the snapshot (`attributes`) that the next series-start frame
/// carries, and problems are reported once per round.
final class EigerStreamAPI {
  /// What each parameter becomes: `(path below /stream/api/<version>/, attribute)`.
  static let parameters = [
    ("status/state", "stream_state"), ("config/mode", "stream_mode"),
    ("config/format", "stream_format"), ("config/header_detail", "stream_header_detail"),
    ("status/dropped", "stream_dropped"),
  ]
  /// Parameters whose failure is reported; the others are optional (older firmware lacks them).
  static let required: Set<String> = ["status/state", "config/mode"]

  struct Answer: Sendable {
    var round: Int
    var path: String
    var result: Result<HTTPClient.Response, any Error>
  }

  let base: String
  let version: Int?
  let http = StageHTTP(connectTimeout: .seconds(2), readTimeout: .seconds(5))
  private let answers = Mailbox<Answer>()
  private var round = 0
  private var received: [Answer] = []
  private var inFlight = false
  /// The last values read, as series-start attributes.
  private(set) var attributes: [String: String] = [:]

  init(api: String, apiVersion: String, version: Int?) {
    base = StageHTTP.base(api) + "/stream/api/\(apiVersion)/"
    self.version = version
  }

  func shutdown() { http.shutdown() }

  /// Starts reading every parameter, unless a round is still running.
  func refresh() {
    guard !inFlight else { return }
    inFlight = true
    round += 1
    received.removeAll()
    let round = round
    let answers = answers
    for (path, _) in Self.parameters {
      guard let request = try? HTTPClient.Request(url: base + path) else {
        answers.post(
          Answer(round: round, path: path, result: .failure(HTTPFailure("invalid URL '\(base + path)'"))))
        continue
      }
      _ = http.start(
        base + path, method: .GET, delegate: ResponseAccumulator(request: request, maxBodySize: 1 << 20),
        timeout: .seconds(5)
      ) { answers.post(Answer(round: round, path: path, result: $0)) }
    }
  }

  /// Takes the answers that arrived; applies a round once it is complete.
  func collect(_ context: StageContext, detectedVersion: Int?) {
    for answer in answers.take() where answer.round == round {
      received.append(answer)
    }
    guard inFlight, received.count == Self.parameters.count else { return }
    inFlight = false
    var values: [String: String] = [:]
    var failures: [String] = []
    for answer in received {
      let attribute = Self.parameters.first { $0.0 == answer.path }?.1 ?? answer.path
      switch answer.result {
      case .success(let response) where response.status == .ok:
        if let text = SimplonValue.text(SimplonValue.value(response.body)) {
          values[attribute] = text
        } else if Self.required.contains(answer.path) {
          failures.append("\(answer.path): not a SIMPLON value")
        }
      case .success(let response):
        if Self.required.contains(answer.path) {
          failures.append("\(answer.path): \(StageHTTP.describe(response))")
        }
      case .failure(let error):
        if Self.required.contains(answer.path) { failures.append("\(answer.path): \(error)") }
      }
    }
    attributes = values
    if !failures.isEmpty {
      context.reportError(
        "api", "cannot read the stream status at \(base): \(failures.sorted().joined(separator: "; "))")
    }
    if values["stream_mode"] == "disabled" {
      context.reportError(
        "stream-disabled",
        "the detector's stream interface is disabled (stream/config/mode): no images will arrive until it is enabled"
      )
    }
    if values["stream_state"] == "error" {
      context.reportError("stream-error", "the detector reports the stream in state 'error'")
    }
    let expected = version ?? detectedVersion
    if let format = values["stream_format"], let expected {
      let matches = (format == "legacy" && expected == 1) || (format == "cbor" && expected == 2)
      if !matches, ["legacy", "cbor"].contains(format) {
        context.reportError(
          "stream-format", "the detector streams '\(format)' but this source reads stream v\(expected)")
      }
    }
  }
}
