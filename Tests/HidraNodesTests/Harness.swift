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

  var catalog: NodeCatalog? { Harness.catalog }

  var runnableTypes: Set<String> { real.runnableTypes.union(["record"]) }

  func makeBody(for node: Node, in graph: Graph) throws -> any StageBody {
    node.type == "record"
      ? RecordBody(recorder: recorder, confirm: node["confirm"]?.boolean ?? true)
      : try real.makeBody(for: node, in: graph)
  }

  struct RecordBody: StageBody {
    let recorder: Recorder
    let confirm: Bool
    mutating func run(_ context: StageContext) throws {
      while let frame = context.receive() {
        // Kept without the frame's receipt, so the source's ledger settles now.
        recorder.append(Frame(kind: frame.kind, meta: frame.meta, parts: frame.parts), to: context.node.name)
        if confirm { frame.confirm() }
      }
    }
  }
}

enum Harness {
  static let recordSpec = NodeTypeSpec(
    name: "record", kind: .forward, summary: "test sink that keeps every frame",
    options: [
      OptionSpec(
        "confirm", .boolean, default: "true",
        doc: "Confirm each frame to its source once kept (false: never confirm).")
    ])
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
