import HidraGraph
import HidraRuntime

/// The stage factory of the real node types: what `hidra-run run` uses.
public struct NodeRuntime: StageFactory {
  public init() {}

  public var runnableTypes: Set<String> { Set(Self.makers.keys) }

  static let makers: [String: @Sendable (Node, Graph) throws -> any StageBody] = [
    "generate": { node, graph in try GenerateSource.Body(node: node, graph: graph) },
    "filter": { node, _ in try FilterNode.Body(node: node) },
    "split": { node, _ in SplitNode.Body(node: node) },
    "checksum": { node, _ in ChecksumNode.Body(node: node) },
    "store": { node, graph in try StoreNode.Body(node: node, graph: graph) },
    "forward": { node, _ in try ForwardNode.makeBody(node) },
    "zmq": { node, _ in ZMQSource.Body(node: node) },
    "directory": { node, _ in DirectorySource.Body(node: node) },
    "eiger-stream": { node, _ in EigerStreamSource.Body(node: node) },
    "hidra": { node, _ in try HidraTransferSource.Body(node: node) },
    "eiger-filewriter": { node, _ in EigerFileWriterSource.Body(node: node) },
  ]

  public var catalog: NodeCatalog? { NodeTypes.catalog }

  /// Call when the run is over (every stage exited) and before the process exits:
  /// waits until ZeroMQ has sent what forwards handed it (up to their linger).
  public static func finish() { SharedZMQ.flush() }

  public func makeBody(for node: Node, in graph: Graph) throws -> any StageBody {
    guard let make = Self.makers[node.type] else { throw RuntimeError.unsupportedNodes([node.name]) }
    return try make(node, graph)
  }
}

/// Errors a node reports when its options, already validated, still cannot be used.
public struct NodeSetupError: Error, CustomStringConvertible {
  public var description: String
  public init(_ description: String) { self.description = description }
}
