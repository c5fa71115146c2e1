import DequeModule
import HidraGraph

/// The inputs of one consuming stage: one queue per edge, behind one lock.
///
/// Every edge keeps its own bounds and delivery mode; the consumer takes frames
/// from all of them in turn. One lock per consumer (not per edge) lets the
/// consumer sleep on a single condition however many inputs it has.
public final class Inbox: @unchecked Sendable {
  // @unchecked Sendable: every mutable field is guarded by `lock`.
  let lock = ConditionLock()
  private(set) var queues: [EdgeQueue] = []
  private var nextQueue = 0
  private var aborted = false
  private var consumerGone = false

  public init() {}

  /// Adds an input edge. Call before the stages start.
  public func addEdge(qos: EdgeQoS, counters: EdgeCounters) -> EdgeQueue {
    let queue = EdgeQueue(inbox: self, qos: qos, counters: counters)
    lock.withLock { queues.append(queue) }
    return queue
  }

  /// Takes up to `max` frames, from the edges in turn, waiting until at least one
  /// is there. Returns false when every edge is closed and empty (or the run was
  /// aborted): the stage's input is over.
  ///
  /// A batch also stops at `maxBytes` of payload (after at least one frame), so a
  /// consumer never holds much beyond its edges' byte bounds: small frames move
  /// in batches, large ones one at a time.
  public func receive(into frames: inout [Frame], max: Int = 64, maxBytes: Int = 1 << 20) -> Bool {
    lock.withLock {
      while true {
        if aborted { return false }
        let (took, open) = takeLocked(into: &frames, max: max, maxBytes: maxBytes)
        if took { return true }
        if !open { return false }
        lock.waitReadable()
      }
    }
  }

  /// Like `receive(into:max:maxBytes:)` but returns after `timeoutNanos` without a
  /// frame; `nil` means the input is over, an empty array means nothing arrived.
  public func receive(timeoutNanos: UInt64, max: Int = 64, maxBytes: Int = 1 << 20) -> [Frame]? {
    let deadline = monotonicNanos() + timeoutNanos
    var frames: [Frame] = []
    return lock.withLock {
      while true {
        if aborted { return nil }
        let (took, open) = takeLocked(into: &frames, max: max, maxBytes: maxBytes)
        if took { return frames }
        if !open { return nil }
        if monotonicNanos() >= deadline { return [] }
        lock.waitReadable(until: deadline)
      }
    }
  }

  /// Moves queued frames into `frames`, starting with a different edge each time
  /// so a busy edge cannot starve the others. Returns whether any frame was taken
  /// and whether any edge is still open or non-empty.
  private func takeLocked(into frames: inout [Frame], max: Int, maxBytes: Int) -> (took: Bool, open: Bool) {
    var took = false
    var open = false
    var bytes = 0
    for step in 0..<queues.count {
      let queue = queues[(nextQueue + step) % queues.count]
      while frames.count < max, bytes < maxBytes, let frame = queue.popLocked() {
        bytes += frame.byteCount
        frames.append(frame)
        took = true
      }
      if !queue.closed || !queue.isEmpty { open = true }
      if frames.count >= max || bytes >= maxBytes {
        open = true
        break
      }
    }
    if !queues.isEmpty { nextQueue = (nextQueue + 1) % queues.count }
    if took { lock.signalWritable() }
    return (took, open)
  }

  /// The consumer will not read any more (it finished or failed): producers'
  /// sends stop waiting and report failure.
  public func detachConsumer() {
    lock.withLock {
      guard !consumerGone else { return }
      consumerGone = true
      if !aborted {
        for queue in queues { queue.countLeftLocked(as: .closed) }
      }
      lock.signalWritable()
    }
  }

  /// Ends the run at once: waiting producers and the consumer return; what is
  /// queued is counted as dropped (`aborted`) and left.
  public func abort() {
    lock.withLock {
      guard !aborted else { return }
      aborted = true
      for queue in queues { queue.abortLocked() }
      lock.signalReadable()
      lock.signalWritable()
    }
  }

  var isAbortedLocked: Bool { aborted }
  var isConsumerGoneLocked: Bool { consumerGone }
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
  unowned let inbox: Inbox
  public let qos: EdgeQoS
  public let counters: EdgeCounters
  private var queue = Deque<Frame>()
  private var dataFrames = 0
  private var bytes = 0
  private(set) var closed = false
  private var sampleCount = 0
  private var nextAllowedNanos: UInt64 = 0
  private let rateInterval: UInt64?

  init(inbox: Inbox, qos: EdgeQoS, counters: EdgeCounters) {
    self.inbox = inbox
    self.qos = qos
    self.counters = counters
    // At most one frame a year keeps the arithmetic far from overflowing.
    self.rateInterval = qos.maxRate.map { UInt64(min(1e9 / $0, 3.2e16)) }
  }

  var isEmpty: Bool { queue.isEmpty }

  /// Whether frames on this edge carry their source's confirmation (`Ledger`).
  var isGuaranteed: Bool { qos.delivery == .guaranteed }

  /// Offers a frame. For a guaranteed edge this waits while the queue is full.
  @discardableResult
  public func send(_ frame: Frame) -> SendResult {
    let size = frame.byteCount
    let lock = inbox.lock
    return lock.withLock {
      if inbox.isAbortedLocked || inbox.isConsumerGoneLocked { return .closed }
      guard frame.kind == .data else {
        appendLocked(frame, size: size)
        return .queued
      }
      counters.offered.add(1, ordering: .relaxed)
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
      var result = SendResult.queued
      switch qos.delivery {
      case .guaranteed:
        if isFullLocked(adding: size) {
          let start = monotonicNanos()
          while isFullLocked(adding: size) {
            if inbox.isAbortedLocked || inbox.isConsumerGoneLocked {
              // Offered but never queued: say where it went.
              counters.countDrop(inbox.isAbortedLocked ? .aborted : .closed)
              counters.blockedNanos.add(Int(monotonicNanos() - start), ordering: .relaxed)
              return .closed
            }
            lock.waitWritable()
          }
          counters.blockedNanos.add(Int(monotonicNanos() - start), ordering: .relaxed)
        }
      case .bestEffort:
        if isFullLocked(adding: size) {
          counters.countDrop(.full)
          return .dropped(.full)
        }
      case .latest:
        while isFullLocked(adding: size), let index = queue.firstIndex(where: { $0.kind == .data }) {
          let evicted = queue.remove(at: index)
          dataFrames -= 1
          bytes -= evicted.byteCount
          counters.countDrop(.oldest)
          result = .queuedDroppingOldest
        }
      }
      appendLocked(frame, size: size)
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

  private func isFullLocked(adding size: Int) -> Bool {
    guard dataFrames > 0 else { return false }
    return dataFrames >= qos.bufferFrames || UInt64(bytes + size) > qos.bufferBytes
  }

  private func appendLocked(_ frame: Frame, size: Int) {
    queue.append(frame)
    if frame.kind == .data {
      dataFrames += 1
      bytes += size
    }
    counters.queuedFrames.store(queue.count, ordering: .relaxed)
    counters.queuedBytes.store(bytes, ordering: .relaxed)
    inbox.lock.signalReadable()
  }

  func popLocked() -> Frame? {
    guard let frame = queue.popFirst() else { return nil }
    let size = frame.byteCount
    if frame.kind == .data {
      dataFrames -= 1
      bytes -= size
      counters.deliveredData.add(1, ordering: .relaxed)
    }
    counters.queuedFrames.store(queue.count, ordering: .relaxed)
    counters.queuedBytes.store(bytes, ordering: .relaxed)
    counters.delivered.add(1, ordering: .relaxed)
    counters.deliveredBytes.add(size, ordering: .relaxed)
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
