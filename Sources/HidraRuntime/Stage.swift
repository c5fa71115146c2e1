import HidraGraph
import Synchronization

/// The code of one node, run on its stage's own thread.
///
/// A body is made on the stage's thread (see `StageFactory`) and never leaves it,
/// so it may hold sockets, files and mutable state without locks.
public protocol StageBody {
  /// Runs until the node is done. Sources return when `context.isStopping`
  /// (or when they have made all they were asked for); other nodes return when
  /// `context.receive` reports the end of their input. Thrown errors stop the
  /// stage and fail the run.
  mutating func run(_ context: StageContext) throws
}

/// A node whose work is one frame at a time, in place: it may run fused on its
/// producer's thread (see `Plan`), its `transform` called for each frame the
/// producer sends. Run on its own thread, it loops over its input, a batch at a
/// time: each frame received so far is transformed, then the batch is emitted.
public protocol FrameTransform: StageBody {
  /// Handles one frame, changing it in place: true to pass it on, false when the
  /// node drops it (confirming it first if it was dropped on purpose, see
  /// `Ledger`). In place, because a frame handed in and out by value was moved
  /// (copied whole) three times per fused node.
  mutating func transform(_ frame: inout Frame, _ context: StageContext) -> Bool
}

extension FrameTransform {
  public mutating func run(_ context: StageContext) throws {
    var batch = FrameBatch()
    while context.receive(into: &batch) {
      // In place: a frame is never copied (a copy retains every reference it holds).
      batch.ring.update { transform(&$0, context) }
      guard context.emit(&batch) else { return }
    }
  }
}

/// Makes stage bodies for nodes; HidraNodes provides the real one.
public protocol StageFactory: Sendable {
  /// The node types this factory can run.
  var runnableTypes: Set<String> { get }
  /// Why `node` cannot run (e.g. an option whose implementation is still to
  /// come), or nil when it can.
  func unsupportedReason(for node: Node) -> String?
  /// Makes the body for `node`, on the stage's own thread.
  func makeBody(for node: Node, in graph: Graph) throws -> any StageBody
  /// The declarations of the node types this factory runs. By default the
  /// scheduling traits below come from there, so a factory that adds node types
  /// to the real ones only names a catalog that holds both.
  var catalog: NodeCatalog? { get }
  /// Whether `node` may run fused on its producer's thread; its body must then
  /// be a `FrameTransform`.
  func isFusable(_ node: Node) -> Bool
  /// Whether `node` passes over every payload byte itself (see `NodeTypeSpec.touchesPayload`).
  func touchesPayload(_ node: Node) -> Bool
  /// Whether the source `node` loses nothing by waiting (see `NodeTypeSpec.canWait`).
  func canWait(_ node: Node) -> Bool
}

extension StageFactory {
  public var catalog: NodeCatalog? { nil }
  public func isFusable(_ node: Node) -> Bool { catalog?[node.type]?.fusable?(node) ?? false }
  public func touchesPayload(_ node: Node) -> Bool { catalog?[node.type]?.touchesPayload ?? false }
  public func canWait(_ node: Node) -> Bool { catalog?[node.type]?.canWait ?? false }

  public func unsupportedReason(for node: Node) -> String? {
    runnableTypes.contains(node.type) ? nil : "type '\(node.type)' cannot run yet"
  }
}

/// What a stage body sees of the run: its node, its inputs, its outputs, its
/// counters, and whether the run is stopping.
public final class StageContext {
  public let node: Node
  public let graph: Graph
  public let output: Output
  public let counters: NodeCounters
  let inbox: Inbox?
  private let stopping: Stopping
  /// Frames taken from the inbox in one batch, handed out one by one (moved out,
  /// not copied). Used by this stage's thread only (`ThreadOwned`: not checked
  /// for exclusive access on every frame).
  private let pending = ThreadOwned(FrameRing(capacity: 64))

  /// The context of a node fused into another stage: no input, no output of its own.
  convenience init(fusedNode node: Node, graph: Graph, counters: NodeCounters, stopping: Stopping) {
    self.init(
      node: node, graph: graph, output: Output(edges: []), inbox: nil, counters: counters, stopping: stopping)
  }

  init(node: Node, graph: Graph, output: Output, inbox: Inbox?, counters: NodeCounters, stopping: Stopping) {
    self.node = node
    self.graph = graph
    self.output = output
    self.inbox = inbox
    self.counters = counters
    self.stopping = stopping
  }

  /// True once the run should drain: sources stop making frames and return.
  public var isStopping: Bool { stopping.requested }

  /// True once the run was aborted: a node retrying something (e.g. a store
  /// waiting for disk space) gives up and returns.
  public var isAborted: Bool { stopping.aborted }

  /// The next frame from any input, waiting for one; nil when every input has
  /// ended (or the run was aborted). Frames are taken in batches under one lock.
  public func receive() -> Frame? {
    guard awaitPending() else { return nil }
    return takePending()
  }

  /// Waits until some frame received is not yet taken: false when every input
  /// has ended, or the run was aborted (what was pending is then abandoned).
  @inline(__always) private func awaitPending() -> Bool {
    if stopping.aborted {
      abandonPending()
      return false
    }
    if pending.value.isEmpty {
      guard let inbox, inbox.receive(into: &pending.value, until: nil) != nil else { return false }
    }
    return true
  }

  /// What `receive(waitingAtMost:)` found.
  public enum Arrival {
    /// The next frame from an input.
    case frame(Frame)
    /// No frame arrived in time; the input goes on.
    case nothingYet
    /// Every input has ended (or the run was aborted), as `receive()` returning nil.
    case ended
  }

  /// Like `receive()`, but waits at most `timeout` for a frame. For a stage
  /// that serves sockets on its own thread between frames: it alternates this
  /// with a short poll of its sockets. `.zero` only takes what is queued.
  public func receive(waitingAtMost timeout: Duration) -> Arrival {
    if stopping.aborted {
      abandonPending()
      return .ended
    }
    if pending.value.isEmpty {
      guard let inbox else { return .ended }
      let (seconds, attoseconds) = max(timeout, .zero).components
      let nanos =
        seconds >= 1 << 30 ? 1 << 62 : UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000)
      guard let took = inbox.receive(into: &pending.value, until: monotonicNanos() &+ nanos) else {
        return .ended
      }
      guard took else { return .nothingYet }
    }
    return .frame(takePending())
  }

  /// Moves every frame received but not yet taken into `batch`, behind what it
  /// holds, waiting for one as `receive()` does: false when every input has
  /// ended (or the run was aborted). At most `FrameBatch.maxFrames` frames and
  /// about `FrameBatch.maxBytes` arrive at once.
  public func receive(into batch: inout FrameBatch) -> Bool {
    guard awaitPending() else { return false }
    let before = (frames: batch.count, bytes: batch.byteCount)
    while let frame = pending.value.popFirst() { batch.append(frame) }
    counters.framesIn.bump(batch.count - before.frames)
    counters.bytesIn.bump(batch.byteCount - before.bytes)
    return true
  }

  private func takePending() -> Frame {
    let frame = pending.value.popFirst()!
    counters.framesIn.bump(1)
    counters.bytesIn.bump(frame.byteCount)
    return frame
  }

  /// Sends a frame to every consumer. Returns false when the run is over for
  /// this stage's consumers (aborted, or a consumer failed).
  @discardableResult
  public func emit(_ frame: consuming Frame) -> Bool { output.send(consume frame) }

  /// Sends the frames of `batch` to every consumer, in order, and empties it:
  /// as emitting them one by one, but the runtime's work per frame is done
  /// once per batch where it can be (see `FrameBatch`). Returns false when the
  /// run is over for this stage's consumers.
  @discardableResult
  public func emit(_ batch: inout FrameBatch) -> Bool { output.send(batch: &batch) }

  /// Counts the frames taken from the inputs but not yet handed out (after the
  /// stage failed), and forgets them.
  func abandonPending() {
    countAbandoned(pending.value.count)
    pending.value.removeAll()
  }

  /// Counts frames the node had taken but could not finish because the run was
  /// aborted (the summary reports them as left in the node).
  public func countAbandoned(_ count: Int = 1) {
    if count > 0 { counters.abandoned.add(count, ordering: .relaxed) }
  }

  /// Counts a problem the node handled without stopping, and logs the first few
  /// of each kind.
  public func reportError(_ kind: String, _ message: String) {
    counters.errors.add(1, ordering: .relaxed)
    let seen = errorKinds[kind, default: 0]
    errorKinds[kind] = seen + 1
    if seen < 3 {
      Log.warning(
        "\(node.name): \(message)\(seen == 2 ? " (further '\(kind)' errors are only counted)" : "")")
    }
  }
  private var errorKinds: [String: Int] = [:]
}

/// The run's stop flag, shared by every stage.
final class Stopping: Sendable {
  private let flag = Atomic<Bool>(false)
  private let abortFlag = Atomic<Bool>(false)
  var requested: Bool { flag.load(ordering: .relaxed) }
  var aborted: Bool { abortFlag.load(ordering: .relaxed) }
  func request() { flag.store(true, ordering: .relaxed) }
  func abort() {
    abortFlag.store(true, ordering: .relaxed)
    flag.store(true, ordering: .relaxed)
  }
}
