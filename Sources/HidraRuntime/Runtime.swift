import Foundation
import HidraGraph
import Synchronization

/// Runs a checked graph: one stage per node, each on its own thread, connected by
/// the edge queues of `EdgeQueue` (see docs/architecture.md for why edges within
/// a process are Swift queues rather than inproc ZeroMQ sockets).
///
/// Lifecycle: `start()`; then either the sources finish by themselves, or
/// `requestStop()` drains (sources stop, every queued frame on a guaranteed edge
/// is still delivered, stages exit in order), or `abort()` ends at once and
/// leaves what is queued (counted as dropped with reason `aborted`).
public final class Runtime: @unchecked Sendable {
  // @unchecked Sendable: `threads` and `failures` are guarded by `state`; the rest
  // is immutable after init.
  public let graph: Graph
  public let metrics: Metrics
  private let factory: any StageFactory
  private let stopping = Stopping()
  private let inboxes: [String: Inbox]
  private let outgoing: [String: [EdgeQueue]]
  /// For each node fused onto its producer's thread: the counters of the edge
  /// it is fused by (see `Plan`).
  private let fusedInto: [String: EdgeCounters]
  /// The node fused after each node, if any.
  private let fusedAfter: [String: String]
  private let state = ConditionLock()
  private var running = 0
  private var started = false
  private var failureList: [String] = []
  private let aborted = Atomic<Bool>(false)

  /// Prepares a run. Throws `RuntimeError` when a node type cannot run yet or the
  /// graph spans several hosts.
  public init(graph: Graph, factory: any StageFactory) throws {
    Self.tuneAllocator()
    let unsupported = graph.nodes.compactMap { node in
      factory.unsupportedReason(for: node).map { "\(node.name): \($0)" }
    }
    if !unsupported.isEmpty { throw RuntimeError.unsupportedNodes(unsupported) }
    if Set(graph.nodes.map { $0.host ?? graph.hosts.first?.name ?? "" }).count > 1 {
      throw RuntimeError.multiHost
    }
    self.graph = graph
    self.factory = factory
    var nodeCounters: [NodeCounters] = []
    var edgeCounters: [EdgeCounters] = []
    var inboxes: [String: Inbox] = [:]
    var outgoing: [String: [EdgeQueue]] = [:]
    var fusedInto: [String: EdgeCounters] = [:]
    var fusedAfter: [String: String] = [:]
    let fused = Plan.fusedEdges(
      graph, isFusable: { factory.isFusable($0) }, touchesPayload: { factory.touchesPayload($0) })
    let paced = Plan.pacedEdges(graph) { factory.canWait($0) }
    for node in graph.nodes {
      nodeCounters.append(NodeCounters(node: node.name, type: node.type))
      guard !node.inputs.isEmpty else { continue }
      if let edge = fused.first(where: { $0.to == node.name }) {
        let counters = EdgeCounters(from: edge.from, to: edge.to)
        edgeCounters.append(counters)
        fusedInto[node.name] = counters
        fusedAfter[edge.from] = node.name
        continue
      }
      let inbox = Inbox()
      for edge in node.inputs {
        let counters = EdgeCounters(from: edge.from, to: edge.to)
        edgeCounters.append(counters)
        let pace = paced.contains { $0.from == edge.from && $0.to == edge.to } ? Plan.pacedQueueBytes : nil
        outgoing[edge.from, default: []].append(
          inbox.addEdge(qos: edge.qos, counters: counters, paceBytes: pace))
      }
      inboxes[node.name] = inbox
    }
    // Keep each producer's edges in the order its consumers were written.
    self.inboxes = inboxes
    self.outgoing = outgoing
    self.fusedInto = fusedInto
    self.fusedAfter = fusedAfter
    self.metrics = Metrics(nodes: nodeCounters, edges: edgeCounters)
  }

  /// Starts every stage. Consumers start before producers so nothing waits on a
  /// stage that is not there yet (it would not matter for correctness).
  public func start() {
    let heads = graph.nodes.filter { fusedInto[$0.name] == nil }
    state.withLock {
      precondition(!started, "a runtime runs once")
      started = true
      running = heads.count
    }
    let byName = Dictionary(graph.nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    for node in heads.reversed() {
      let counters = metrics.node(node.name)!
      var nodes: [Node] = []
      while let next = fusedAfter[nodes.last?.name ?? node.name].flatMap({ byName[$0] }) {
        nodes.append(next)
      }
      let chain = nodes
      let edges = outgoing[chain.last?.name ?? node.name] ?? []
      let inbox = inboxes[node.name]
      let thread = Thread { [self] in
        // The context (and the bodies made from it) live on this thread only.
        Thread.current.name = Plan.threadName(node.name)
        let output = Output(edges: edges, counters: counters)
        let context = StageContext(
          node: node, graph: graph, output: output, inbox: inbox, counters: counters, stopping: stopping)
        runStage(context) {
          try output.fuse(
            chain.map { next in
              guard let body = try factory.makeBody(for: next, in: graph) as? any FrameTransform else {
                throw RuntimeError.unsupportedNodes(["\(next.name): cannot run fused"])
              }
              let context = StageContext(
                fusedNode: next, graph: graph, counters: metrics.node(next.name)!, stopping: stopping)
              return Output.FusedNode(body: body, context: context, edge: fusedInto[next.name]!)
            })
        }
      }
      thread.stackSize = 1 << 20
      thread.start()
    }
  }

  /// Runs a stage's body on this thread (after `prepare`, which makes the nodes
  /// fused into it), and ends the stage however the body ends.
  private func runStage(_ context: StageContext, prepare: () throws -> Void) {
    let node = context.node
    do {
      try prepare()
      var body = try factory.makeBody(for: node, in: graph)
      try body.run(context)
    } catch {
      state.withLock { failureList.append("\(node.name): \(error)") }
      Log.error("node '\(node.name)' failed: \(error)")
      context.abandonPending()
      abort()
    }
    context.output.close()
    context.inbox?.detachConsumer()
    state.withLock {
      running -= 1
      state.signalReadable()
    }
  }

  /// Sets glibc's allocator for frames of megabytes moving between threads; once
  /// per process (every `Runtime` calls it; call it earlier to cover code that
  /// runs before). By default glibc serves blocks from 128 KiB up (its threshold
  /// grows with use, to at most 32 MiB) with a fresh `mmap` and gives them back on
  /// `free`, so every large payload beyond the buffer pool faulted in and zeroed
  /// its pages again: generate -> checksum -> count at 4 MiB ran at a quarter of
  /// its speed. Blocks up to 32 MiB now come from the heap and freed memory is
  /// kept for reuse; what the process holds is still bounded by the edges' bytes.
  public static func tuneAllocator() { _ = allocatorTuned }

  private static let allocatorTuned: Bool = {
    // mallopt(3) is declared in <malloc.h>, which Glibc's module does not export.
    typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return false }
    let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
    let trimThreshold: Int32 = -1  // M_TRIM_THRESHOLD
    let mmapThreshold: Int32 = -3  // M_MMAP_THRESHOLD
    _ = mallopt(mmapThreshold, 32 << 20)
    _ = mallopt(trimThreshold, 1 << 30)
    return true
  }()

  /// Drains: sources stop making frames; everything else finishes what is queued.
  public func requestStop() { stopping.request() }

  /// Ends the run at once. Queued frames are left and counted (`aborted`).
  public func abort() {
    stopping.abort()
    guard !aborted.exchange(true, ordering: .relaxed) else { return }
    for inbox in inboxes.values { inbox.abort() }
  }

  public var isAborted: Bool { aborted.load(ordering: .relaxed) }

  /// Waits until every stage has exited, or `timeoutNanos` passes; true when all exited.
  @discardableResult
  public func wait(timeoutNanos: UInt64? = nil) -> Bool {
    let deadline = timeoutNanos.map { monotonicNanos() + $0 }
    return state.withLock {
      while running > 0 {
        if let deadline, monotonicNanos() >= deadline { return false }
        state.waitReadable(until: deadline)
      }
      return true
    }
  }

  /// Stages that failed, with their errors.
  public var failures: [String] { state.withLock { failureList } }
}

public enum RuntimeError: Error, CustomStringConvertible {
  case unsupportedNodes([String])
  case multiHost

  public var description: String {
    switch self {
    case .unsupportedNodes(let nodes):
      return "these nodes cannot run yet: " + nodes.joined(separator: "; ")
    case .multiHost:
      return "this graph spans several hosts; running one host's part (--host) is not supported yet"
    }
  }
}
