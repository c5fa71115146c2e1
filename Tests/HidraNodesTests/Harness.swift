import HidraGraph
import HidraNodes
import HidraRuntime
import Synchronization
import Testing

/// Runs real graphs with the real nodes, plus one test-only sink type, `record`,
/// that keeps every frame it receives so a test can check them.
final class Recorder: Sendable {
  private let frames = Mutex<[String: [Frame]]>([:])

  func append(_ frame: Frame, to node: String) { frames.withLock { $0[node, default: []].append(frame) } }
  func frames(of node: String) -> [Frame] { frames.withLock { $0[node] ?? [] } }
  func data(of node: String) -> [Frame] { frames(of: node).filter { $0.kind == .data } }
}

struct RecordingFactory: StageFactory {
  let recorder: Recorder
  let real = NodeRuntime()

  var runnableTypes: Set<String> { real.runnableTypes.union(["record"]) }

  func makeBody(for node: Node, in graph: Graph) throws -> any StageBody {
    node.type == "record" ? RecordBody(recorder: recorder) : try real.makeBody(for: node, in: graph)
  }

  struct RecordBody: StageBody {
    let recorder: Recorder
    mutating func run(_ context: StageContext) throws {
      while let frame = context.receive() {
        frame.confirm()  // kept for good: what a store does once a file is durable
        recorder.append(frame, to: context.node.name)
      }
    }
  }
}

enum Harness {
  static let recordSpec = NodeTypeSpec(
    name: "record", kind: .forward, summary: "test sink that keeps every frame", options: [])
  static let catalog = NodeCatalog(NodeTypes.all + [recordSpec])

  /// Validates `yaml` (it must be free of errors), runs it to the end, and
  /// returns what every `record` node received and the run's metrics.
  static func run(_ yaml: String) throws -> (Recorder, Metrics) {
    let result = GraphValidator(catalog: catalog).validate(text: yaml, file: "test.yaml")
    #expect(!result.diagnostics.hasErrors, "\(result.diagnostics.sorted.map(\.description))")
    let graph = try #require(result.graph)
    let recorder = Recorder()
    let runtime = try Runtime(graph: graph, factory: RecordingFactory(recorder: recorder))
    runtime.start()
    let finished = runtime.wait(timeoutNanos: 30_000_000_000)
    if !finished { runtime.abort() }
    #expect(finished, "the run did not finish in 30 s")
    #expect(runtime.failures.isEmpty, "\(runtime.failures)")
    return (recorder, runtime.metrics)
  }
}
