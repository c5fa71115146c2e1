/// The output side of a stage: the edges to its consumers.
///
/// Owned by the producing stage's thread. `send` offers a frame to every edge in
/// turn (`send(batch:)` a batch of frames); a full best-effort or latest edge
/// drops and returns at once, so only a full guaranteed edge can make the
/// producer wait. The current series start is remembered and replayed to an
/// edge that attaches mid-series, so a late consumer always has the header
/// before its first image.
public final class Output {
  public private(set) var edges: [EdgeQueue]
  /// What `send` reads on every frame, on this stage's thread only
  /// (`ThreadOwned`: not checked for exclusive access on every frame).
  private struct Route: ~Copyable {
    /// `edges`, used by `send` without reference counting: the consumer reads
    /// the same objects for every batch, and a retain and release per frame
    /// would move their cache lines between the cores. `edges` keeps them alive.
    var edges: [Unmanaged<EdgeQueue>]
    /// Nodes fused onto this stage's thread, in order: each frame sent goes
    /// through them before it reaches `edges`. Unretained, as `edges`;
    /// `fusedNodes` keeps them alive.
    var fused: [Unmanaged<FusedNode>] = []
    /// Where a batch's copies for one edge are put (every edge but the last).
    var copies = FrameRing(capacity: FrameBatch.maxFrames)
  }
  private let route: ThreadOwned<Route>
  private let counters: NodeCounters?
  /// The fused nodes, owned.
  private var fusedNodes: [FusedNode] = []
  /// The series start of the open series, if any.
  public private(set) var openSeries: Frame?

  public init(edges: [EdgeQueue], counters: NodeCounters? = nil) {
    self.edges = edges
    self.route = ThreadOwned(Route(edges: edges.map { Unmanaged.passUnretained($0) }))
    self.counters = counters
  }

  /// Runs `nodes` on this stage's thread, after this stage and before `edges`;
  /// before the stage sends its first frame.
  func fuse(_ nodes: [FusedNode]) {
    fusedNodes = nodes
    route.value.fused = nodes.map { Unmanaged.passUnretained($0) }
  }

  /// A node running fused after this stage, and the edge it is fused by.
  final class FusedNode {
    /// Used on this stage's thread only (`ThreadOwned`: its mutating
    /// `transform` is not checked for exclusive access on every frame).
    let body: ThreadOwned<any FrameTransform>
    let context: StageContext
    let edge: EdgeCounters
    /// `context.counters`, held here: read through the context it was retained
    /// and released on every frame.
    let counters: NodeCounters

    init(body: any FrameTransform, context: StageContext, edge: EdgeCounters) {
      self.body = ThreadOwned(body)
      self.context = context
      self.edge = edge
      self.counters = context.counters
    }

    /// `node.apply(&frame)` without retaining the node.
    static func apply(_ node: Unmanaged<FusedNode>, _ frame: inout Frame) -> Bool {
      node._withUnsafeGuaranteedRef { $0.apply(&frame) }
    }

    /// Passes one frame through the node, counting it on the edge and the node:
    /// false when the node dropped it.
    func apply(_ frame: inout Frame) -> Bool {
      let size = frame.byteCount
      countIn(frames: 1, dataFrames: frame.kind == .data ? 1 : 0, bytes: size)
      guard body.value.transform(&frame, context) else { return false }
      counters.framesOut.bump(1)
      counters.bytesOut.bump(frame.byteCount)
      return true
    }

    /// `node.apply(&batch, tally)` without retaining the node.
    static func apply(_ node: Unmanaged<FusedNode>, _ batch: inout FrameRing, _ tally: FrameRing.Tally)
      -> FrameRing.Tally
    {
      node._withUnsafeGuaranteedRef { $0.apply(&batch, tally) }
    }

    /// Passes a batch (`tally` says what it holds) through the node, frame by
    /// frame in order, counting the batch once; the frames the node drops
    /// leave the batch. Returns what it holds then.
    func apply(_ batch: inout FrameRing, _ tally: FrameRing.Tally) -> FrameRing.Tally {
      countIn(frames: batch.count, dataFrames: tally.dataFrames, bytes: tally.bytes)
      let context = self.context
      let out = batch.update { body.value.transform(&$0, context) }
      counters.framesOut.bump(batch.count)
      counters.bytesOut.bump(out.bytes)
      return out
    }

    /// Counts frames in, on the edge and the node. All on this thread: the
    /// queue in between is only counted, never filled.
    private func countIn(frames: Int, dataFrames: Int, bytes: Int) {
      edge.offered.bump(dataFrames)
      edge.deliveredData.bump(dataFrames)
      edge.enqueued.bump(frames)
      edge.enqueuedBytes.bump(bytes)
      edge.delivered.bump(frames)
      edge.deliveredBytes.bump(bytes)
      counters.framesIn.bump(frames)
      counters.bytesIn.bump(bytes)
    }
  }

  /// Moves `frame` to `edge` without retaining the edge.
  private static func send(_ frame: consuming Frame, to edge: Unmanaged<EdgeQueue>) -> SendResult {
    // A closure cannot move what it captures: the frame goes through an optional.
    var moving: Frame? = consume frame
    return edge._withUnsafeGuaranteedRef { $0.send(moving.take()!) }
  }

  /// The number of branches (consuming edges).
  public var branchCount: Int { edges.count }

  /// Sends to every edge. Returns false when some edge is closed for good (the
  /// run was aborted or its consumer failed).
  ///
  /// The frame is moved on, not copied, where it can be: to the last edge, and
  /// through fused nodes.
  @discardableResult
  public func send(_ frame: consuming Frame) -> Bool {
    // No closure here captures `frame` (the static helpers hold the closures
    // that avoid retaining nodes and edges): a captured parameter cannot be
    // moved on at the end, and copying it into a local cost a whole frame.
    if !route.value.fused.isEmpty {
      count(frame)
      // By index: a for-in over the array retained and released its buffer.
      for index in route.value.fused.indices {
        guard FusedNode.apply(route.value.fused[index], &frame) else { return true }
      }
      remember(frame)
    } else {
      track(frame)
    }
    var ok = true
    if frame.receipt == nil {
      let count = route.value.edges.count
      guard count > 0 else { return true }
      for index in 0..<(count - 1) where Self.send(copy frame, to: route.value.edges[index]) == .closed {
        ok = false
      }
      if Self.send(consume frame, to: route.value.edges[count - 1]) == .closed { ok = false }
    } else {
      for edge in edges where edge.send(frame.copy(forGuaranteedEdge: edge.isGuaranteed)) == .closed {
        ok = false
      }
      frame.confirm()  // handed on: the edges' receipts carry the obligation now
    }
    return ok
  }

  /// Sends the frames of `batch` on, in order, as `send(_:)` would one by one,
  /// and empties it: each fused node runs over the whole batch in turn, then
  /// each edge takes the batch (every edge but the last a copy of it), telling
  /// its consumer once. Returns false when some edge is closed for good.
  @discardableResult
  public func send(batch: inout FrameBatch) -> Bool {
    defer { batch.byteCount = 0 }
    guard !batch.isEmpty else { return true }
    var tally = batch.ring.tally()
    counters?.framesOut.bump(batch.count)
    counters?.bytesOut.bump(tally.bytes)
    for index in route.value.fused.indices {
      tally = FusedNode.apply(route.value.fused[index], &batch.ring, tally)
    }
    if tally.hasControl {
      batch.ring.forEach { frame in
        if frame.pointee.kind != .data { remember(frame.pointee) }
      }
    }
    let count = route.value.edges.count
    guard count > 0, !batch.isEmpty else {
      batch.ring.removeAll()
      return true
    }
    // A tracked frame is confirmed once every edge has its own copy (with its
    // own receipt on a guaranteed edge), so no edge takes the original.
    var ok = true
    for index in 0..<count {
      let edge = route.value.edges[index]
      if index == count - 1 && !tally.hasReceipt {
        ok = Self.send(batch: &batch.ring, tally: tally, to: edge) && ok
      } else {
        ok = Self.send(copiesOf: batch.ring, tally: tally, to: edge, through: &route.value.copies) && ok
      }
    }
    if tally.hasReceipt {
      batch.ring.forEach { $0.pointee.confirm() }
      batch.ring.removeAll()
    }
    return ok
  }

  /// Moves the frames of `batch` (`tally` says what it holds) to `edge`
  /// without retaining the edge.
  private static func send(batch: inout FrameRing, tally: FrameRing.Tally, to edge: Unmanaged<EdgeQueue>)
    -> Bool
  {
    edge._withUnsafeGuaranteedRef { $0.send(batch: &batch, tally: tally) }
  }

  /// Sends copies of the frames of `batch` to `edge`, put in `copies` first.
  private static func send(
    copiesOf batch: borrowing FrameRing, tally: FrameRing.Tally, to edge: Unmanaged<EdgeQueue>,
    through copies: inout FrameRing
  ) -> Bool {
    edge._withUnsafeGuaranteedRef { edge in
      let guaranteed = edge.isGuaranteed
      batch.forEach { copies.append($0.pointee.copy(forGuaranteedEdge: guaranteed)) }
      var copied = tally
      copied.hasReceipt = tally.hasReceipt && guaranteed  // a copy for another edge carries no receipt
      return edge.send(batch: &copies, tally: copied)
    }
  }

  /// Sends a data frame to one branch only (round-robin and by-key splits).
  /// Control frames always go to every branch: use `send(_:)` for them.
  @discardableResult
  public func send(_ frame: consuming Frame, toBranch index: Int) -> Bool {
    precondition(frame.kind == .data, "control frames go to every branch")
    precondition(route.value.fused.isEmpty, "a node with branches has no fused consumer")
    track(frame)
    let edge = edges[index]
    // Moved to the edge when it carries no receipt; else the edge gets a copy
    // with a receipt of its own, and this one is confirmed as handed on.
    guard frame.receipt != nil else { return edge.send(consume frame) != .closed }
    defer { frame.confirm() }
    return edge.send(frame.copy(forGuaranteedEdge: edge.isGuaranteed)) != .closed
  }

  /// Adds an edge while running; it first receives the open series' start frame.
  public func attach(_ edge: EdgeQueue) {
    if let openSeries { edge.send(openSeries) }
    edges.append(edge)
    route.value.edges.append(Unmanaged.passUnretained(edge))
  }

  /// The stage is done: consumers see the end once they have drained.
  public func close() {
    for edge in edges { edge.close() }
  }

  private func track(_ frame: Frame) {
    remember(frame)
    count(frame)
  }

  private func remember(_ frame: Frame) {
    switch frame.kind {
    case .seriesStart: openSeries = frame
    case .seriesEnd: openSeries = nil
    case .data: break
    }
  }

  private func count(_ frame: Frame) {
    counters?.framesOut.bump(1)
    counters?.bytesOut.bump(frame.byteCount)
  }
}
