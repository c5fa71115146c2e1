import HidraGraph

/// The inputs of one consuming stage: one queue per edge, behind one lock.
///
/// Every edge keeps its own bounds and delivery mode; the consumer takes frames
/// from all of them in turn. One lock per consumer (not per edge) lets the
/// consumer sleep on a single condition however many inputs it has.
public final class Inbox: @unchecked Sendable {
  // @unchecked Sendable: every mutable field is guarded by `lock`.
  private let shared = Shared()
  var lock: ConditionLock { shared.lock }
  private(set) var queues: [EdgeQueue] = []
  /// `lock` and `queues` for the per-batch path, without reference counting:
  /// the producers use the same objects on every frame, and a retain or release
  /// here would move their cache lines between the cores each time. `shared`
  /// and `queues` keep them alive.
  private let fastLock: Unmanaged<ConditionLock>
  private var fastQueues: [Unmanaged<EdgeQueue>] = []
  private var nextQueue = 0

  /// The lock and the state the edges need too. The edges hold it strongly
  /// rather than the inbox (which holds them): no cycle, and no unowned
  /// reference checked on every frame.
  final class Shared: @unchecked Sendable {
    // @unchecked Sendable: the flags are guarded by `lock`.
    let lock = ConditionLock()
    var aborted = false
    var consumerGone = false
  }

  public init() { fastLock = Unmanaged.passUnretained(shared.lock) }

  /// Adds an input edge. Call before the stages start. With `paceBytes`, a
  /// guaranteed edge's producer also waits while that many payload bytes are
  /// queued (see `Plan.pacedEdges`).
  public func addEdge(qos: EdgeQoS, counters: EdgeCounters, paceBytes: Int? = nil) -> EdgeQueue {
    let queue = EdgeQueue(inbox: shared, qos: qos, counters: counters, paceBytes: paceBytes)
    lock.withLock {
      queues.append(queue)
      fastQueues.append(Unmanaged.passUnretained(queue))
    }
    return queue
  }

  /// Takes up to `max` frames, from the edges in turn, waiting until at least one
  /// is there. Returns false when every edge is closed and empty (or the run was
  /// aborted): the stage's input is over.
  ///
  /// A batch also stops at `maxBytes` of payload (after at least one frame), so a
  /// consumer never holds much beyond its edges' byte bounds: small frames move
  /// in batches, large ones one at a time.
  public func receive(
    into frames: inout some RangeReplaceableCollection<Frame>, max: Int = 64, maxBytes: Int = 1 << 20
  ) -> Bool {
    receive(until: nil, max: max, maxBytes: maxBytes) { frames.append($0) } ?? false
  }

  /// Like `receive(into:max:maxBytes:)` but returns after `timeoutNanos` without a
  /// frame; `nil` means the input is over, an empty array means nothing arrived.
  public func receive(timeoutNanos: UInt64, max: Int = 64, maxBytes: Int = 1 << 20) -> [Frame]? {
    var frames: [Frame] = []
    let deadline = monotonicNanos() + timeoutNanos
    guard receive(until: deadline, max: max, maxBytes: maxBytes, { frames.append($0) }) != nil else {
      return nil
    }
    return frames
  }

  /// The stages' own way in: frames are moved into `ring`, never copied. With a
  /// deadline (CLOCK_MONOTONIC nanoseconds), gives up then: true when frames were
  /// taken, false when none arrived in time, nil when the input is over.
  func receive(into ring: inout FrameRing, until deadline: UInt64?, max: Int = 64, maxBytes: Int = 1 << 20)
    -> Bool?
  {
    receive(until: deadline, max: max, maxBytes: maxBytes) { ring.append($0) }
  }

  private func receive(
    until deadline: UInt64?, max: Int, maxBytes: Int, _ append: (consuming Frame) -> Void
  ) -> Bool? {
    fastLock._withUnsafeGuaranteedRef { lock in
      lock.lock()
      defer { lock.unlock() }
      while true {
        if shared.aborted { return nil }
        let (took, open) = takeLocked(max: max, maxBytes: maxBytes, lock, append)
        if took { return true }
        if !open { return nil }
        if let deadline, monotonicNanos() >= deadline { return false }
        lock.waitReadable(until: deadline)
      }
    }
  }

  /// Moves up to `max` queued frames to `append`, starting with a different edge
  /// each time so a busy edge cannot starve the others. Returns whether any frame
  /// was taken and whether any edge is still open or non-empty.
  private func takeLocked(
    max: Int, maxBytes: Int, _ lock: ConditionLock, _ append: (consuming Frame) -> Void
  ) -> (took: Bool, open: Bool) {
    var taken = 0
    var open = false
    var bytes = 0
    let count = fastQueues.count
    for step in 0..<count {
      let full = fastQueues[(nextQueue + step) % count]._withUnsafeGuaranteedRef { queue in
        while taken < max, bytes < maxBytes, let frame = queue.popLocked() {
          bytes += frame.byteCount
          append(frame)
          taken += 1
        }
        if !queue.closed || !queue.isEmpty { open = true }
        return taken >= max || bytes >= maxBytes
      }
      if full {
        open = true
        break
      }
    }
    if count > 0 { nextQueue = (nextQueue + 1) % count }
    if taken > 0 { lock.signalWritable() }
    return (taken > 0, open)
  }

  /// The consumer will not read any more (it finished or failed): producers'
  /// sends stop waiting and report failure.
  public func detachConsumer() {
    lock.withLock {
      guard !shared.consumerGone else { return }
      shared.consumerGone = true
      if !shared.aborted {
        for queue in queues { queue.countLeftLocked(as: .closed) }
      }
      lock.signalWritable()
    }
  }

  /// Ends the run at once: waiting producers and the consumer return; what is
  /// queued is counted as dropped (`aborted`) and left.
  public func abort() {
    lock.withLock {
      guard !shared.aborted else { return }
      shared.aborted = true
      for queue in queues { queue.abortLocked() }
      lock.signalReadable()
      lock.signalWritable()
    }
  }

}

/// The result of offering a frame to an edge.
public enum SendResult: Sendable, Equatable {
  /// Queued for the consumer.
  case queued
  /// Queued, and the oldest data frame(s) dropped to make room (`latest`).
  case queuedDroppingOldest
  /// Not queued: dropped by the edge's QoS (best-effort full, or thinned).
  case dropped(DropReason)
  /// Not queued: the run was aborted or the consumer has gone.
  case closed
}

/// One edge's queue, with its delivery mode, its frame and byte bounds, and its
/// thinning. Frames are offered by exactly one producer.
///
/// The rules, per `docs/qos.md`:
/// - the queue is full when it holds `bufferFrames` data frames, or when the new
///   frame's bytes would pass `bufferBytes` (an empty queue takes any one frame,
///   so a frame larger than the byte bound still moves);
/// - `guaranteed`: the producer waits until there is room;
/// - `best-effort`: the new data frame is dropped and counted;
/// - `latest`: the oldest queued data frames are dropped and counted until the
///   new one fits;
/// - control frames are always queued, never dropped, sampled or rate-limited,
///   and do not count against the bounds.
public final class EdgeQueue: @unchecked Sendable {
  // @unchecked Sendable: every mutable field is guarded by `inbox.lock`.
  let inbox: Inbox.Shared
  /// `inbox.lock`, used without reference counting: both threads of an edge
  /// would otherwise retain and release the lock object on every frame, and its
  /// count shares a cache line with the waiter counts. `inbox` keeps it alive.
  private let lock: Unmanaged<ConditionLock>
  public let qos: EdgeQoS
  public let counters: EdgeCounters
  private var queue = FrameRing()
  private var dataFrames = 0
  private var bytes = 0
  private(set) var closed = false
  private var sampleCount = 0
  private var nextAllowedNanos: UInt64 = 0
  private let rateInterval: UInt64?
  /// The bytes queued beyond which the producer waits although the buffer has
  /// room, on a paced guaranteed edge; otherwise the buffer's own bound.
  private let waitBytes: UInt64

  init(inbox: Inbox.Shared, qos: EdgeQoS, counters: EdgeCounters, paceBytes: Int? = nil) {
    self.inbox = inbox
    self.lock = Unmanaged.passUnretained(inbox.lock)
    self.qos = qos
    self.counters = counters
    self.waitBytes =
      qos.delivery == .guaranteed
      ? min(qos.bufferBytes, paceBytes.map { UInt64($0) } ?? .max) : qos.bufferBytes
    // At most one frame a year keeps the arithmetic far from overflowing.
    self.rateInterval = qos.maxRate.map { UInt64(min(1e9 / $0, 3.2e16)) }
  }

  var isEmpty: Bool { queue.isEmpty }

  /// Whether frames on this edge carry their source's confirmation (`Ledger`).
  var isGuaranteed: Bool { qos.delivery == .guaranteed }

  /// Offers a frame. For a guaranteed edge this waits while the queue is full.
  ///
  /// The frame is moved into the queue, not copied: a caller passing its last
  /// use of a frame hands over the references it holds.
  @discardableResult
  public func send(_ frame: consuming Frame) -> SendResult {
    let size = frame.byteCount
    let isData = frame.kind == .data
    let inbox = self.inbox
    lock._withUnsafeGuaranteedRef { $0.lock() }
    defer { lock._withUnsafeGuaranteedRef { $0.unlock() } }
    if inbox.aborted || inbox.consumerGone { return .closed }
    let result = isData ? admitLocked(size: size) : .queued
    switch result {
    case .queued, .queuedDroppingOldest: appendLocked(frame, size: size, isData: isData)
    case .dropped, .closed: break
    }
    return result
  }

  /// Applies the edge's thinning and delivery mode to a data frame of `size`
  /// bytes about to be queued (waiting for room on a guaranteed edge, evicting on
  /// a latest one): whether and how it may be queued.
  private func admitLocked(size: Int) -> SendResult {
    counters.offered.bump()
    if qos.sampleEvery > 1 {
      defer { sampleCount += 1 }
      if sampleCount % qos.sampleEvery != 0 {
        counters.countDrop(.sample)
        return .dropped(.sample)
      }
    }
    if let interval = rateInterval {
      let now = monotonicNanos()
      if now < nextAllowedNanos {
        counters.countDrop(.rate)
        return .dropped(.rate)
      }
      // Keep the average rate through jitter, but after an idle gap start afresh
      // rather than letting a burst through.
      let base = now - nextAllowedNanos > interval ? now : nextAllowedNanos
      nextAllowedNanos = base + interval
    }
    switch qos.delivery {
    case .guaranteed:
      guard isFullLocked(adding: size, bytesBound: waitBytes) else { return .queued }
      let start = monotonicNanos()
      defer { counters.blockedNanos.add(Int(monotonicNanos() - start), ordering: .relaxed) }
      while isFullLocked(adding: size, bytesBound: waitBytes) {
        if inbox.aborted || inbox.consumerGone {
          // Offered but never queued: say where it went.
          counters.countDrop(inbox.aborted ? .aborted : .closed)
          return .closed
        }
        lock._withUnsafeGuaranteedRef { $0.waitWritable() }
      }
      return .queued
    case .bestEffort:
      guard isFullLocked(adding: size) else { return .queued }
      counters.countDrop(.full)
      return .dropped(.full)
    case .latest:
      var result = SendResult.queued
      while isFullLocked(adding: size), let index = queue.firstIndex(where: { $0.kind == .data }) {
        let evicted = queue.remove(at: index)
        dataFrames -= 1
        bytes -= evicted.byteCount
        counters.evicted.bump()
        counters.evictedBytes.bump(evicted.byteCount)
        counters.countDrop(.oldest)
        result = .queuedDroppingOldest
      }
      return result
    }
  }

  /// The producer is done: once the queue is empty the consumer sees its end.
  public func close() {
    inbox.lock.withLock {
      closed = true
      inbox.lock.signalReadable()
    }
  }

  private func isFullLocked(adding size: Int, bytesBound: UInt64? = nil) -> Bool {
    guard dataFrames > 0 else { return false }
    return dataFrames >= qos.bufferFrames || UInt64(bytes + size) > bytesBound ?? qos.bufferBytes
  }

  private func appendLocked(_ frame: consuming Frame, size: Int, isData: Bool) {
    queue.append(frame)
    if isData {
      dataFrames += 1
      bytes += size
    }
    counters.enqueued.bump()
    counters.enqueuedBytes.bump(size)
    lock._withUnsafeGuaranteedRef { $0.signalReadable() }
  }

  func popLocked() -> Frame? {
    guard let frame = queue.popFirst() else { return nil }
    let size = frame.byteCount
    if frame.kind == .data {
      dataFrames -= 1
      bytes -= size
      counters.deliveredData.bump()
    }
    counters.delivered.bump()
    counters.deliveredBytes.bump(size)
    return frame
  }

  func abortLocked() { countLeftLocked(as: .aborted) }

  /// Counts the data frames still queued as dropped for `reason` (they stay in
  /// the queue, so the summary's 'left' column shows them too).
  func countLeftLocked(as reason: DropReason) {
    let left = queue.count { $0.kind == .data }
    if left > 0 { counters.countDrop(reason, left) }
  }
}
