/// What `hidra-run` will start for a graph: one stage per node, and for every edge
/// the transport and endpoint it uses.
///
/// Edges within a host are in-process queues (bounded in frames and bytes, with
/// the edge's delivery mode; see docs/architecture.md). Edges that
/// cross hosts are TCP: the consuming host binds `tcp://*:PORT`, with ports given
/// out from the host's `base_port` in the order the edges are written, and the
/// producing host connects to `tcp://ADDRESS:PORT`.
public struct Plan: Sendable {
  public struct Stage: Sendable {
    public var name: String
    public var type: String
    public var kind: NodeKind
    public var host: String?
    /// The name of the stage's thread (as `top -H` shows it).
    public var thread: String
    /// The network addresses the stage binds or connects, as `option: address`.
    public var endpoints: [String] = []
  }

  public struct Link: Sendable {
    public enum Transport: String, Sendable {
      /// An in-process queue between two stages' threads.
      case queue
      case tcp
    }
    public var edge: Edge
    public var transport: Transport
    /// Where the consumer binds.
    public var bind: String
    /// Where the producer connects.
    public var connect: String
  }

  public var graph: String
  public var stages: [Stage]
  public var links: [Link]

  /// Compiles a checked graph. The graph must be valid. With the catalog, each
  /// stage also lists the addresses its endpoint options name.
  public init(_ graph: Graph, catalog: NodeCatalog? = nil) {
    self.graph = graph.name
    let defaultHost = graph.hosts.first?.name
    let hostOf = Dictionary(
      graph.nodes.map { ($0.name, $0.host ?? defaultHost) }, uniquingKeysWith: { a, _ in a })
    func host(of name: String) -> String? { hostOf[name] ?? defaultHost }
    stages = graph.nodes.map { node in
      let endpoints = (catalog?[node.type]?.options ?? []).compactMap { option -> String? in
        guard case .endpoint(_, let role) = option.type, let value = node[option.name]?.string else {
          return nil
        }
        return "\(role == .listen ? "binds" : "connects") \(value) (\(option.name))"
      }
      return Stage(
        name: node.name, type: node.type, kind: node.kind, host: node.host ?? defaultHost,
        thread: Self.threadName(node.name), endpoints: endpoints)
    }
    var nextPort: [String: Int] = [:]
    links = graph.edges.map { edge in
      let producerHost = host(of: edge.from)
      let consumerHost = host(of: edge.to)
      if producerHost == consumerHost {
        return Link(edge: edge, transport: .queue, bind: "in-process queue", connect: "in-process queue")
      }
      let target = graph.hosts.first { $0.name == consumerHost }!
      let port = nextPort[target.name, default: target.basePort]
      nextPort[target.name] = port + 1
      return Link(
        edge: edge, transport: .tcp, bind: "tcp://*:\(port)", connect: "tcp://\(target.address):\(port)")
    }
  }

  /// Linux limits thread names to 15 bytes.
  public static func threadName(_ node: String) -> String {
    String(("h:" + node).utf8.prefix(15)) ?? "h:stage"
  }

  /// A readable listing for `hidra-run plan`.
  public var text: String {
    var out =
      "graph \(graph): \(stages.count) stage\(stages.count == 1 ? "" : "s"), \(links.count) edge\(links.count == 1 ? "" : "s")\n\nstages:\n"
    let width = stages.map(\.name.count).max() ?? 0
    for stage in stages {
      let host = stage.host.map { " on host \($0)" } ?? ""
      out +=
        "  \(stage.name.padding(to: width))  \(stage.type) (\(stage.kind.rawValue))\(host), thread \(stage.thread)\n"
      for endpoint in stage.endpoints { out += "  \(String(repeating: " ", count: width))    \(endpoint)\n" }
    }
    out += "\nedges:\n"
    for link in links {
      out +=
        "  \(link.edge.from) -> \(link.edge.to): \(Rendering.edgeLabel(link.edge.qos).replacing("\n", with: ", "))\n"
      if link.bind == link.connect {
        out += "      \(link.bind)\n"
      } else {
        out +=
          "      \(link.transport.rawValue): \(link.edge.to) binds \(link.bind), \(link.edge.from) connects \(link.connect)\n"
      }
    }
    return out
  }
}

extension String {
  func padding(to width: Int) -> String {
    count >= width ? self : self + String(repeating: " ", count: width - count)
  }
}
