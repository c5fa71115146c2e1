import Synchronization

/// Counters of one node. Written by the node's stage, read by anyone (relaxed atomics).
///
/// The runtime counts every frame in and out on the stage's own thread with
/// `bump` (a plain load and store), as a single writer may: a locked add is a
/// full barrier, four to six of them per frame. A node whose own helper
/// threads count (a sink's network threads, say) uses `add` for its counters,
/// and never shares one with the runtime's `bump`s: a sink has no output, so
/// the runtime does not count its frames out.
public final class NodeCounters: Sendable {
  public let node: String
  public let type: String
  public let framesIn = Atomic<Int>(0)
  public let bytesIn = Atomic<Int>(0)
  public let framesOut = Atomic<Int>(0)
  public let bytesOut = Atomic<Int>(0)
  /// Problems the node handled without stopping (bad input, failed checks, retries).
  public let errors = Atomic<Int>(0)
  /// Frames the node had taken from its inputs but not finished when the run was aborted.
  public let abandoned = Atomic<Int>(0)

  public init(node: String, type: String) {
    self.node = node
    self.type = type
  }

  public func snapshot() -> NodeSnapshot {
    NodeSnapshot(
      node: node, type: type, framesIn: framesIn.load(ordering: .relaxed),
      bytesIn: bytesIn.load(ordering: .relaxed),
      framesOut: framesOut.load(ordering: .relaxed), bytesOut: bytesOut.load(ordering: .relaxed),
      errors: errors.load(ordering: .relaxed), abandoned: abandoned.load(ordering: .relaxed))
  }
}

/// Why a frame did not travel an edge.
public enum DropReason: String, Sendable, CaseIterable {
  /// best-effort edge full: the new frame was dropped.
  case full
  /// latest edge full: the oldest queued frame was dropped.
  case oldest
  /// thinned by `sample: {every: N}`.
  case sample
  /// thinned by `rate: {max: R}`.
  case rate
  /// the run was aborted (second signal) with the frame still queued.
  case aborted
  /// the consumer had stopped (finished or failed) with the frame still queued.
  case closed
}

/// Counters of one edge: what was offered, delivered, dropped and queued.
///
/// The producer and the consumer of an edge run on different cores and count
/// every frame, so the counters each one writes sit on cache lines of their own
/// (a counter written from both sides moves its line between the cores on every
/// frame), and the queue's fill level is not stored per frame but worked out
/// from both sides' totals when read.
public final class EdgeCounters: Sendable {
  public let from: String
  public let to: String

  // Written by the producer (with the edge's lock held, or on the producer's
  // thread for a fused edge).
  /// Data frames offered to the edge by its producer.
  public let offered = Atomic<Int>(0)
  /// Frames (data and control) put into the queue, and their bytes.
  let enqueued = Atomic<Int>(0)
  let enqueuedBytes = Atomic<Int>(0)
  /// Queued frames dropped to make room (`latest`), and their bytes.
  let evicted = Atomic<Int>(0)
  let evictedBytes = Atomic<Int>(0)
  /// Time the producer spent waiting for room (back-pressure), in nanoseconds.
  public let blockedNanos = Atomic<Int>(0)
  private let droppedFull = Atomic<Int>(0)
  private let droppedOldest = Atomic<Int>(0)
  private let droppedSample = Atomic<Int>(0)
  private let droppedRate = Atomic<Int>(0)
  private let droppedAborted = Atomic<Int>(0)
  private let droppedClosed = Atomic<Int>(0)
  private let producerSide = CacheLinePadding()

  // Written by the consumer, with the edge's lock held.
  /// Frames (data and control) handed to the consumer, and their bytes.
  public let delivered = Atomic<Int>(0)
  public let deliveredBytes = Atomic<Int>(0)
  /// Data frames handed to the consumer: offered = deliveredData + dropped + queued.
  public let deliveredData = Atomic<Int>(0)
  private let consumerSide = CacheLinePadding()

  /// Frames in the queue now (data and control).
  public var queuedFrames: Int {
    // The consumer's total first: it can only fall behind the producer's.
    let out = delivered.load(ordering: .relaxed)
    return max(0, enqueued.load(ordering: .relaxed) - evicted.load(ordering: .relaxed) - out)
  }

  /// Payload bytes in the queue now.
  public var queuedBytes: Int {
    let out = deliveredBytes.load(ordering: .relaxed)
    return max(0, enqueuedBytes.load(ordering: .relaxed) - evictedBytes.load(ordering: .relaxed) - out)
  }

  public init(from: String, to: String) {
    self.from = from
    self.to = to
  }

  private func counter<T>(_ reason: DropReason, _ body: (borrowing Atomic<Int>) -> T) -> T {
    switch reason {
    case .full: return body(droppedFull)
    case .oldest: return body(droppedOldest)
    case .sample: return body(droppedSample)
    case .rate: return body(droppedRate)
    case .aborted: return body(droppedAborted)
    case .closed: return body(droppedClosed)
    }
  }

  public func dropped(_ reason: DropReason) -> Int {
    counter(reason) { $0.load(ordering: .relaxed) }
  }

  func countDrop(_ reason: DropReason, _ count: Int = 1) {
    counter(reason) { _ = $0.add(count, ordering: .relaxed) }
  }

  public func snapshot() -> EdgeSnapshot {
    EdgeSnapshot(
      from: from, to: to, offered: offered.load(ordering: .relaxed),
      delivered: delivered.load(ordering: .relaxed),
      deliveredBytes: deliveredBytes.load(ordering: .relaxed),
      deliveredData: deliveredData.load(ordering: .relaxed),
      dropped: Dictionary(uniqueKeysWithValues: DropReason.allCases.map { ($0, dropped($0)) }),
      queuedFrames: queuedFrames, queuedBytes: queuedBytes,
      blockedNanos: blockedNanos.load(ordering: .relaxed))
  }
}

/// 64 bytes that keep the fields before and after them on different cache lines.
struct CacheLinePadding: Sendable {
  private let words: (Int, Int, Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0, 0, 0)
}

extension Atomic where Value == Int {
  /// Adds to a counter that only one thread at a time writes (its readers may see
  /// a slightly old value): a plain load and store, without the locked
  /// read-modify-write of `add`.
  @inline(__always)
  func bump(_ amount: Int = 1) {
    store(load(ordering: .relaxed) &+ amount, ordering: .relaxed)
  }
}

public struct NodeSnapshot: Sendable, Hashable {
  public var node: String
  public var type: String
  public var framesIn: Int
  public var bytesIn: Int
  public var framesOut: Int
  public var bytesOut: Int
  public var errors: Int
  public var abandoned: Int
}

public struct EdgeSnapshot: Sendable, Hashable {
  public var from: String
  public var to: String
  public var offered: Int
  public var delivered: Int
  public var deliveredBytes: Int
  public var deliveredData: Int
  public var dropped: [DropReason: Int]
  public var queuedFrames: Int
  public var queuedBytes: Int
  public var blockedNanos: Int

  public var totalDropped: Int { dropped.values.reduce(0, +) }
}

/// Every counter of a run, in one place: the stderr summary reads it now, and a
/// Prometheus endpoint will read it later.
public final class Metrics: Sendable {
  public let nodes: [NodeCounters]
  public let edges: [EdgeCounters]

  public init(nodes: [NodeCounters], edges: [EdgeCounters]) {
    self.nodes = nodes
    self.edges = edges
  }

  public func node(_ name: String) -> NodeCounters? { nodes.first { $0.node == name } }
  public func edge(from: String, to: String) -> EdgeCounters? {
    edges.first { $0.from == from && $0.to == to }
  }

  public func snapshot() -> MetricsSnapshot {
    MetricsSnapshot(
      taken: monotonicNanos(), nodes: nodes.map { $0.snapshot() }, edges: edges.map { $0.snapshot() })
  }
}

public struct MetricsSnapshot: Sendable {
  public var taken: UInt64
  public var nodes: [NodeSnapshot]
  public var edges: [EdgeSnapshot]
}
