/// What `hidra-run` will start for a graph: the stages (a node, or a chain of
/// nodes fused onto one thread), and for every edge the transport and endpoint it
/// uses.
///
/// Fusion: a node whose type declares its per-frame work cheap (`fusable`: a
/// filter, an xxh3/xxh64 checksum) runs on its producer's thread, called
/// directly, when the edge between them is a plain guaranteed one (no thinning),
/// it is the producer's only output and the node's only input, and both run on
/// the same host. A guaranteed edge makes the producer wait for its consumer
/// anyway, so calling it directly keeps every promise and saves a queue, a
/// thread hand-over and a cache transfer per frame.
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
    /// The nodes fused into this stage after its first one, in order.
    public var fused: [String] = []
    /// The name of the stage's thread (as `top -H` shows it).
    public var thread: String
    /// The network addresses the stage binds or connects, as `option: address`.
    public var endpoints: [String] = []
  }

  public struct Link: Sendable {
    public enum Transport: String, Sendable {
      /// An in-process queue between two stages' threads.
      case queue
      /// A direct call: the consumer is fused into the producer's stage.
      case fused
      case tcp
    }
    public var edge: Edge
    public var transport: Transport
    /// Where the consumer binds.
    public var bind: String
    /// Where the producer connects.
    public var connect: String
    /// An in-process queue whose producer waits once `Plan.pacedQueueBytes` are
    /// queued (see `pacedEdges`).
    public var paced = false
  }

  public var graph: String
  public var stages: [Stage]
  public var links: [Link]

  /// Compiles a checked graph. The graph must be valid. With the catalog, each
  /// stage also lists the addresses its endpoint options name.
  public init(_ graph: Graph, catalog: NodeCatalog? = nil) {
    self.graph = graph.name
    let fused = Self.fusedEdges(
      graph, isFusable: { node in catalog?[node.type]?.fusable?(node) ?? false },
      touchesPayload: { node in catalog?[node.type]?.touchesPayload ?? false })
    let defaultHost = graph.hosts.first?.name
    let hostOf = Dictionary(
      graph.nodes.map { ($0.name, $0.host ?? defaultHost) }, uniquingKeysWith: { a, _ in a })
    func host(of name: String) -> String? { hostOf[name] ?? defaultHost }
    let into = Dictionary(fused.map { ($0.to, $0.from) }, uniquingKeysWith: { a, _ in a })
    let after = Dictionary(fused.map { ($0.from, $0.to) }, uniquingKeysWith: { a, _ in a })
    stages = graph.nodes.filter { into[$0.name] == nil }.map { node in
      let endpoints = (catalog?[node.type]?.options ?? []).compactMap { option -> String? in
        guard case .endpoint(_, let role) = option.type, let value = node[option.name]?.string else {
          return nil
        }
        return "\(role == .listen ? "binds" : "connects") \(value) (\(option.name))"
      }
      var chain: [String] = []
      var next = after[node.name]
      while let name = next {
        chain.append(name)
        next = after[name]
      }
      return Stage(
        name: node.name, type: node.type, kind: node.kind, host: node.host ?? defaultHost,
        fused: chain, thread: Self.threadName(node.name), endpoints: endpoints)
    }
    let paced = Self.pacedEdges(graph) { node in catalog?[node.type]?.canWait ?? false }
    var nextPort: [String: Int] = [:]
    links = graph.edges.map { edge in
      let producerHost = host(of: edge.from)
      let consumerHost = host(of: edge.to)
      if fused.contains(where: { $0.from == edge.from && $0.to == edge.to }) {
        return Link(
          edge: edge, transport: .fused, bind: "direct call (fused)", connect: "direct call (fused)")
      }
      if producerHost == consumerHost {
        return Link(
          edge: edge, transport: .queue, bind: "in-process queue", connect: "in-process queue",
          paced: paced.contains { $0.from == edge.from && $0.to == edge.to })
      }
      let target = graph.hosts.first { $0.name == consumerHost }!
      let port = nextPort[target.name, default: target.basePort]
      nextPort[target.name] = port + 1
      return Link(
        edge: edge, transport: .tcp, bind: "tcp://*:\(port)", connect: "tcp://\(target.address):\(port)")
    }
  }

  /// The edges whose consumer runs fused on its producer's thread (see the type's
  /// documentation), given which nodes are cheap enough.
  public static func fusedEdges(
    _ graph: Graph, isFusable: (Node) -> Bool, touchesPayload: (Node) -> Bool
  ) -> [Edge] {
    let defaultHost = graph.hosts.first?.name
    let byName = Dictionary(graph.nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    let outgoing = Dictionary(grouping: graph.edges, by: \.from)
    func candidate(_ edge: Edge) -> Bool {
      guard let producer = byName[edge.from], let consumer = byName[edge.to] else { return false }
      return edge.qos.delivery == .guaranteed && edge.qos.sampleEvery <= 1 && edge.qos.maxRate == nil
        && edge.qos.spill == nil && consumer.inputs.count == 1 && outgoing[edge.from]?.count == 1
        && (producer.host ?? defaultHost) == (consumer.host ?? defaultHost) && isFusable(consumer)
    }
    // Whether the stage that runs `name` passes over the payload bytes: the node
    // itself, or a node it is fused after. The graph has no cycles.
    var stageTouches: [String: Bool] = [:]
    func touches(_ name: String) -> Bool {
      if let known = stageTouches[name] { return known }
      guard let node = byName[name] else { return false }
      var result = touchesPayload(node)
      // A node that does not touch the bytes is fused whenever it is a candidate.
      if !result, let edge = node.inputs.first, node.inputs.count == 1, candidate(edge) {
        result = touches(edge.from)
      }
      stageTouches[name] = result
      return result
    }
    return graph.edges.filter { edge in
      guard candidate(edge), let consumer = byName[edge.to] else { return false }
      return !(touchesPayload(consumer) && touches(edge.from))
    }
  }

  /// How many payload bytes a paced edge queues before its producer waits.
  ///
  /// Producing further ahead of a consumer that is slower gains no throughput;
  /// it only moves the frames in between out of the CPU's caches, so that both
  /// sides then work at memory speed instead of cache speed and stay there (see
  /// "Paced edges" in docs/qos.md and the measurements in bench/README.md). 4 MiB keeps two 4 MiB frames in flight per
  /// edge and 1024 frames of 4 KiB.
  public static let pacedQueueBytes = 4 << 20

  /// The guaranteed edges whose every upstream source can wait (`canWait`):
  /// their producer waits once `pacedQueueBytes` are queued, not only when the
  /// edge's buffer is full. The buffer of an edge fed by a detector stream or
  /// any other source that cannot wait is used in full, as configured: it is
  /// what absorbs a consumer's stall there.
  public static func pacedEdges(_ graph: Graph, canWait: (Node) -> Bool) -> [Edge] {
    let byName = Dictionary(graph.nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    // Whether everything that feeds `name` can wait. The graph has no cycles.
    var known: [String: Bool] = [:]
    func waits(_ name: String) -> Bool {
      if let result = known[name] { return result }
      guard let node = byName[name] else { return false }
      let result = node.inputs.isEmpty ? canWait(node) : node.inputs.allSatisfy { waits($0.from) }
      known[name] = result
      return result
    }
    return graph.edges.filter { $0.qos.delivery == .guaranteed && waits($0.from) }
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
      let fused =
        stage.fused.isEmpty ? "" : ", then " + stage.fused.joined(separator: ", ") + " on the same thread"
      out +=
        "  \(stage.name.padding(to: width))  \(stage.type) (\(stage.kind.rawValue))\(host), thread \(stage.thread)\(fused)\n"
      for endpoint in stage.endpoints { out += "  \(String(repeating: " ", count: width))    \(endpoint)\n" }
    }
    out += "\nedges:\n"
    for link in links {
      out +=
        "  \(link.edge.from) -> \(link.edge.to): \(Rendering.edgeLabel(link.edge.qos).replacing("\n", with: ", "))\n"
      if link.paced {
        out +=
          "      \(link.bind), paced: the producer waits at \(Self.pacedQueueBytes >> 20) MiB queued "
          + "(every source feeding it can wait)\n"
      } else if link.bind == link.connect {
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
