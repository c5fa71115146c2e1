import HidraGraph
import Synchronization

/// The inputs of one consuming stage: one queue per edge, and one lock to sleep on.
///
/// Every edge keeps its own bounds and delivery mode; the consumer takes frames
/// from all of them in turn. Guaranteed and best-effort edges are lock-free
/// (one producer, one consumer, see `EdgeQueue`): the lock is taken only to
/// sleep and to wake a sleeper. A `latest` edge, whose producer evicts from the
/// front of the queue the consumer reads, keeps its queue behind the lock. One
/// lock per consumer (not per edge) lets the consumer sleep on a single
/// condition however many inputs it has.
public final class Inbox: @unchecked Sendable {
  // @unchecked Sendable: `queues`, `fastQueues` and `nextQueue` are changed
  // before the stages start (`addEdge`) or by the consumer alone; the rest is
  // atomics or guarded by `lock`.
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
  /// Whether some edge keeps its queue behind the lock (a `latest` edge).
  private var hasLockedQueues = false

  /// The lock and the state the edges need too. The edges hold it strongly
  /// rather than the inbox (which holds them): no cycle, and no unowned
  /// reference checked on every frame.
  final class Shared: Sendable {
    let lock = ConditionLock()
    /// Set once, with the lock held and the waiters signalled; read anywhere.
    let aborted = Atomic<Bool>(false)
    let consumerGone = Atomic<Bool>(false)

    /// Whether sends on this inbox's edges fail: the run was aborted or the consumer has gone.
    var isClosedForSends: Bool {
      aborted.load(ordering: .relaxed) || consumerGone.load(ordering: .relaxed)
    }
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
      if !queue.isLockFree { hasLockedQueues = true }
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
    into frames: inout some RangeReplaceableCollection<Frame>, max: Int = FrameBatch.maxFrames,
    maxBytes: Int = FrameBatch.maxBytes
  ) -> Bool {
    receive(until: nil, max: max, maxBytes: maxBytes) { frames.append($0) } ?? false
  }

  /// Like `receive(into:max:maxBytes:)` but returns after `timeoutNanos` without a
  /// frame; `nil` means the input is over, an empty array means nothing arrived.
  public func receive(
    timeoutNanos: UInt64, max: Int = FrameBatch.maxFrames, maxBytes: Int = FrameBatch.maxBytes
  ) -> [Frame]? {
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
  func receive(
    into ring: inout FrameRing, until deadline: UInt64?, max: Int = FrameBatch.maxFrames,
    maxBytes: Int = FrameBatch.maxBytes
  )
    -> Bool?
  {
    receive(until: deadline, max: max, maxBytes: maxBytes) { ring.append($0) }
  }

  private func receive(
    until deadline: UInt64?, max: Int, maxBytes: Int, _ append: (consuming Frame) -> Void
  ) -> Bool? {
    fastLock._withUnsafeGuaranteedRef { lock in
      // Lock-free edges only: take what is there without the lock.
      if !hasLockedQueues {
        if shared.aborted.load(ordering: .relaxed) { return nil }
        let (took, open) = take(max: max, maxBytes: maxBytes, lock, holdingLock: false, append)
        if took { return true }
        if !open { return nil }
      }
      lock.lock()
      defer { lock.unlock() }
      while true {
        if shared.aborted.load(ordering: .relaxed) { return nil }
        let (took, open) = take(max: max, maxBytes: maxBytes, lock, holdingLock: true, append)
        if took { return true }
        if !open { return nil }
        if let deadline, monotonicNanos() >= deadline { return false }
        lock.waitReadable(until: deadline) { self.lockFreeEdgeChanged() }
      }
    }
  }

  /// Whether a lock-free edge has a frame or its end to give (sequentially
  /// consistent: see `ConditionLock.waitReadable`).
  private func lockFreeEdgeChanged() -> Bool {
    for queue in fastQueues where queue._withUnsafeGuaranteedRef({ $0.hasNewsForConsumer }) { return true }
    return false
  }

  /// Moves up to `max` queued frames to `append`, starting with a different edge
  /// each time so a busy edge cannot starve the others. Returns whether any frame
  /// was taken and whether any edge is still open or non-empty. Edges behind the
  /// lock are only read when `holdingLock`; until then they count as open.
  private func take(
    max: Int, maxBytes: Int, _ lock: ConditionLock, holdingLock: Bool, _ append: (consuming Frame) -> Void
  ) -> (took: Bool, open: Bool) {
    var taken = 0
    var open = false
    var bytes = 0
    var tookLocked = false
    var tookLockFree = false
    let count = fastQueues.count
    for step in 0..<count {
      let full = fastQueues[(nextQueue + step) % count]._withUnsafeGuaranteedRef { queue in
        if queue.isLockFree {
          let before = taken
          if !queue.takeLockFree(max: max, maxBytes: maxBytes, taken: &taken, bytes: &bytes, append) {
            open = true
          }
          if taken > before { tookLockFree = true }
        } else if holdingLock {
          while taken < max, bytes < maxBytes, let frame = queue.popLocked() {
            bytes += frame.byteCount
            append(frame)
            taken += 1
            tookLocked = true
          }
          if !queue.closed || !queue.isEmpty { open = true }
        } else {
          open = true
        }
        return taken >= max || bytes >= maxBytes
      }
      if full {
        open = true
        break
      }
    }
    if count > 0 { nextQueue = (nextQueue + 1) % count }
    if holdingLock {
      if tookLocked || tookLockFree { lock.signalWritable() }
    } else if tookLockFree {
      lock.wakeWriterIfWaiting()
    }
    return (taken > 0, open)
  }

  /// The consumer will not read any more (it finished or failed): producers'
  /// sends stop waiting and report failure.
  public func detachConsumer() {
    lock.withLock {
      guard !shared.consumerGone.load(ordering: .relaxed) else { return }
      shared.consumerGone.store(true, ordering: .sequentiallyConsistent)
      if !shared.aborted.load(ordering: .relaxed) {
        for queue in queues { queue.countLeft(as: .closed) }
      }
      lock.signalWritable()
    }
  }

  /// Ends the run at once: waiting producers and the consumer return; what is
  /// queued is counted as dropped (`aborted`) and left.
  public func abort() {
    lock.withLock {
      guard !shared.aborted.load(ordering: .relaxed) else { return }
      shared.aborted.store(true, ordering: .sequentiallyConsistent)
      for queue in queues { queue.countLeft(as: .aborted) }
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
/// thinning. Frames are offered by exactly one producer at a time and taken by
/// the inbox's one consumer.
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
///
/// Guaranteed and best-effort edges are lock-free, one producer and one
/// consumer (`FrameChunks`). The producer publishes how many frames it has
/// written; the consumer publishes, once per batch, how many data frames and
/// bytes it has taken; each side reads the other's totals only when its own
/// idea of them says it must (the queue looks full, or empty), so in a steady
/// stream the two cores share one cache line per frame and one per batch. The
/// inbox's lock is taken only to sleep, and to wake a sleeper
/// (`ConditionLock.waitReadable`). A `latest` edge keeps a `FrameRing` behind
/// the inbox's lock: its producer evicts from the front the consumer reads.
public final class EdgeQueue: @unchecked Sendable {
  // @unchecked Sendable: the producer's fields are touched by the one producing
  // thread, the consumer's by the one consuming thread, the shared totals are
  // atomics; a `latest` edge's queue is guarded by `inbox.lock`.
  let inbox: Inbox.Shared
  /// `inbox.lock`, used without reference counting: both threads of an edge
  /// would otherwise retain and release the lock object on every frame, and its
  /// count shares a cache line with the waiter counts. `inbox` keeps it alive.
  private let lock: Unmanaged<ConditionLock>
  public let qos: EdgeQoS
  public let counters: EdgeCounters
  /// Whether this edge is one of the lock-free kinds (not `latest`).
  let isLockFree: Bool
  private let rateInterval: UInt64?
  /// Whether the edge thins at all (`sample` or `rate`): most edges do not.
  private let thins: Bool
  /// The bytes queued beyond which the producer waits although the buffer has
  /// room, on a paced guaranteed edge; otherwise the buffer's own bound.
  private let waitBytes: UInt64

  // The producer's side, written on every frame.
  private let producerLine = CacheLinePadding()
  /// What only the producer reads and writes (`ThreadOwned`: unchecked).
  private struct Producer {
    var writer: FrameChunks.Writer
    var sampleCount = 0
    var nextAllowedNanos: UInt64 = 0
    /// Data frames written, and their payload bytes.
    var writtenData = 0
    var writtenBytes = 0
    /// The consumer's totals as last read.
    var seenTakenData = 0
    var seenTakenBytes = 0
  }
  private let producer: ThreadOwned<Producer>
  /// Frames written (data and control): the consumer may read this many.
  private let written = Atomic<Int>(0)
  /// Data frames published (read by an abort, to count what is left). Stored
  /// with `written`, once per batch: the consumer polls this line while it
  /// waits, and a store per frame moved it between the cores per frame.
  private let writtenData = Atomic<Int>(0)
  /// Set after the last frame is written.
  private let closedFlag = Atomic<Bool>(false)

  // The consumer's side, written on every frame.
  private let consumerLine = CacheLinePadding()
  /// What only the consumer reads and writes (`ThreadOwned`: unchecked).
  private struct Consumer {
    var reader: FrameChunks.Reader
    var read = 0
    /// Whether the consumer has seen this edge closed and drained.
    var sawEnd = false
  }
  private let consumer: ThreadOwned<Consumer>
  /// Data frames and their bytes taken, published once per batch.
  private let takenData = Atomic<Int>(0)
  private let takenBytes = Atomic<Int>(0)

  private let sharedLine = CacheLinePadding()
  /// The chunk the consumer hands back to the producer.
  private let spare = FrameChunks.Spare(nil)

  // A `latest` edge's queue, guarded by the inbox's lock.
  private var queue = FrameRing()
  private var dataFrames = 0
  private var bytes = 0
  private(set) var closed = false

  init(inbox: Inbox.Shared, qos: EdgeQoS, counters: EdgeCounters, paceBytes: Int? = nil) {
    self.inbox = inbox
    self.lock = Unmanaged.passUnretained(inbox.lock)
    self.qos = qos
    self.counters = counters
    self.isLockFree = qos.delivery != .latest
    self.waitBytes =
      qos.delivery == .guaranteed
      ? min(qos.bufferBytes, paceBytes.map { UInt64($0) } ?? .max) : qos.bufferBytes
    // At most one frame a year keeps the arithmetic far from overflowing.
    self.rateInterval = qos.maxRate.map { UInt64(min(1e9 / $0, 3.2e16)) }
    self.thins = qos.sampleEvery > 1 || qos.maxRate != nil
    let (writer, reader) = FrameChunks.make()
    producer = ThreadOwned(Producer(writer: writer))
    consumer = ThreadOwned(Consumer(reader: reader))
  }

  deinit {
    consumer.value.reader.free(
      remaining: written.load(ordering: .acquiring) - consumer.value.read, spare: spare)
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
    guard isLockFree else { return sendLocked(consume frame) }
    if inbox.isClosedForSends { return .closed }
    var unpublished = Unpublished()
    let result = write(consume frame, &unpublished)
    publish(&unpublished)
    return result
  }

  /// Offers the frames of `batch` in order, taking them all out of it: each
  /// meets the edge's QoS as it would alone, but the consumer is told once, for
  /// the whole batch (on a guaranteed edge, also before each wait for room).
  /// Returns false when the edge is closed for sends (the run was aborted or
  /// the consumer has gone): the data frames of the batch not queued by then
  /// are counted as offered and dropped (`aborted` or `closed`), and let go.
  ///
  /// `tally` is what `batch` holds. A batch of data frames that fits as a
  /// whole, on an edge that does not thin, is written in one go: each of its
  /// frames would have been admitted alone (the queued totals only grow within
  /// the batch, so the last frame's look decides), and the closed look is taken
  /// once (a close after it is one the batch raced ahead of, as a close after a
  /// frame's own look is).
  func send(batch: inout FrameRing, tally: FrameRing.Tally) -> Bool {
    assert(tally == batch.tally(), "the tally must be the batch's")
    if isLockFree && !thins && !tally.hasControl && fits(dataFrames: tally.dataFrames, bytes: tally.bytes) {
      if inbox.isClosedForSends { return letGo(&batch) }
      counters.offered.bump(tally.dataFrames)
      producer.value.writtenData += tally.dataFrames
      producer.value.writtenBytes += tally.bytes
      var unpublished = Unpublished(frames: batch.count, bytes: tally.bytes)
      batch.moveAll { producer.value.writer.push(moving: $0, count: $1, spare: spare) }
      publish(&unpublished)
      return true
    }
    guard isLockFree else {
      while !batch.isEmpty {
        if inbox.isClosedForSends { return letGo(&batch) }
        let frame = batch.popFirst()!
        let isData = frame.kind == .data
        // Closed since the look above: this frame was let go too.
        if sendLocked(consume frame) == .closed { return letGo(&batch, alsoData: isData ? 1 : 0) }
      }
      return true
    }
    var unpublished = Unpublished()
    defer { publish(&unpublished) }
    while !batch.isEmpty {
      // Each frame, as `send` does: none is written once the consumer has gone.
      if inbox.isClosedForSends { return letGo(&batch) }
      if write(batch.popFirst()!, &unpublished) == .closed { return letGo(&batch) }
    }
    return true
  }

  /// Counts the data frames of `batch` (and `alsoData` more, already taken out
  /// of it) as offered and dropped, the edge being closed for sends, and lets
  /// them go. Returns false (the edge is closed).
  private func letGo(_ batch: inout FrameRing, alsoData: Int = 0) -> Bool {
    let dataFrames = batch.count(where: { $0.pointee.kind == .data }) + alsoData
    if dataFrames > 0 {
      counters.offered.add(dataFrames, ordering: .relaxed)
      counters.countDrop(inbox.aborted.load(ordering: .relaxed) ? .aborted : .closed, dataFrames)
    }
    batch.removeAll()
    return false
  }

  /// Frames written but not yet published to the consumer, nor counted.
  private struct Unpublished {
    var frames = 0
    var bytes = 0
  }

  /// Admits and writes one frame, without telling the consumer: `unpublished`
  /// holds the frames written since it was last told, and is published before
  /// any wait for room, so the consumer can make that room.
  private func write(_ frame: consuming Frame, _ unpublished: inout Unpublished) -> SendResult {
    let size = frame.byteCount
    if frame.kind == .data {
      let result = admitLockFree(size: size, &unpublished)
      guard result == .queued else { return result }
      producer.value.writtenData += 1
      producer.value.writtenBytes += size
    }
    producer.value.writer.push(consume frame, spare: spare)
    unpublished.frames += 1
    unpublished.bytes += size
    return .queued
  }

  /// Counts the frames written and tells the consumer of them (waking it if it
  /// sleeps); `unpublished` is then empty.
  private func publish(_ unpublished: inout Unpublished) {
    guard unpublished.frames > 0 else { return }
    countEnqueued(frames: unpublished.frames, bytes: unpublished.bytes)
    writtenData.store(producer.value.writtenData, ordering: .relaxed)
    written.store(written.load(ordering: .relaxed) + unpublished.frames, ordering: .sequentiallyConsistent)
    unpublished = Unpublished()
    lock._withUnsafeGuaranteedRef { $0.wakeReaderIfWaiting() }
  }

  /// Thinning (sample, rate), applied to every data frame offered: nil when it
  /// passes, else why it was dropped.
  @inline(__always) private func thin() -> SendResult? {
    counters.offered.bump()
    return thins ? sampleAndRate() : nil
  }

  private func sampleAndRate() -> SendResult? {
    if qos.sampleEvery > 1 {
      defer { producer.value.sampleCount += 1 }
      if producer.value.sampleCount % qos.sampleEvery != 0 {
        counters.countDrop(.sample)
        return .dropped(.sample)
      }
    }
    if let interval = rateInterval {
      let now = monotonicNanos()
      if now < producer.value.nextAllowedNanos {
        counters.countDrop(.rate)
        return .dropped(.rate)
      }
      // Keep the average rate through jitter, but after an idle gap start afresh
      // rather than letting a burst through.
      let next = producer.value.nextAllowedNanos
      let base = now - next > interval ? now : next
      producer.value.nextAllowedNanos = base + interval
    }
    return nil
  }

  // MARK: - Lock-free edges (guaranteed, best-effort): the producer's side

  /// Applies thinning and the delivery mode to a data frame of `size` bytes
  /// about to be written, waiting for room on a guaranteed edge (after
  /// publishing the `unpublished` frames).
  private func admitLockFree(size: Int, _ unpublished: inout Unpublished) -> SendResult {
    if let thinned = thin() { return thinned }
    switch qos.delivery {
    case .guaranteed:
      guard isFull(adding: size, bytesBound: waitBytes) else { return .queued }
      publish(&unpublished)
      return waitForRoom(size: size)
    case .bestEffort:
      guard isFull(adding: size, bytesBound: qos.bufferBytes) else { return .queued }
      counters.countDrop(.full)
      return .dropped(.full)
    case .latest:
      preconditionFailure("a latest edge is not lock-free")
    }
  }

  /// Whether a data frame of `size` bytes must wait (or be dropped), by the
  /// consumer's totals as last read; if so, reads them again and answers by those.
  private func isFull(adding size: Int, bytesBound: UInt64) -> Bool {
    guard isFullBySeen(adding: size, bytesBound: bytesBound) else { return false }
    readConsumerTotals()
    return isFullBySeen(adding: size, bytesBound: bytesBound)
  }

  /// A queue with no data frame always takes one, whatever its size.
  private func isFullBySeen(adding size: Int, bytesBound: UInt64) -> Bool {
    producer.value.writtenData > producer.value.seenTakenData
      && !fitsBySeen(dataFrames: 1, bytes: size, bytesBound: bytesBound)
  }

  /// Whether `dataFrames` more data frames of `bytes` in all fit without
  /// waiting or dropping, by the consumer's totals as last read; if not, reads
  /// them again and answers by those.
  private func fits(dataFrames: Int, bytes: Int) -> Bool {
    let bound = qos.delivery == .guaranteed ? waitBytes : qos.bufferBytes
    if fitsBySeen(dataFrames: dataFrames, bytes: bytes, bytesBound: bound) { return true }
    readConsumerTotals()
    return fitsBySeen(dataFrames: dataFrames, bytes: bytes, bytesBound: bound)
  }

  private func fitsBySeen(dataFrames: Int, bytes: Int, bytesBound: UInt64) -> Bool {
    producer.value.writtenData - producer.value.seenTakenData + dataFrames <= qos.bufferFrames
      && UInt64(producer.value.writtenBytes - producer.value.seenTakenBytes + bytes) <= bytesBound
  }

  /// Sequentially consistent, for the wait's last look (`ConditionLock.waitWritable`).
  private func readConsumerTotals() {
    producer.value.seenTakenData = takenData.load(ordering: .sequentiallyConsistent)
    producer.value.seenTakenBytes = takenBytes.load(ordering: .sequentiallyConsistent)
  }

  /// Waits until a data frame of `size` bytes fits (guaranteed edge), or the run
  /// ends for this edge.
  private func waitForRoom(size: Int) -> SendResult {
    let start = monotonicNanos()
    defer { counters.blockedNanos.add(Int(monotonicNanos() - start), ordering: .relaxed) }
    let inbox = self.inbox
    return lock._withUnsafeGuaranteedRef { lock in
      lock.lock()
      defer { lock.unlock() }
      while isFull(adding: size, bytesBound: waitBytes) {
        if inbox.isClosedForSends {
          // Offered but never queued: say where it went.
          counters.countDrop(inbox.aborted.load(ordering: .relaxed) ? .aborted : .closed)
          return .closed
        }
        lock.waitWritable { !self.isFull(adding: size, bytesBound: self.waitBytes) }
      }
      return .queued
    }
  }

  // MARK: - Lock-free edges: the consumer's side

  /// Moves frames to `append` while `taken < max` and `bytes < maxBytes`,
  /// counting them into both. Returns true when the edge is closed and every
  /// frame has been taken.
  func takeLockFree(
    max: Int, maxBytes: Int, taken: inout Int, bytes: inout Int, _ append: (consuming Frame) -> Void
  ) -> Bool {
    // Closed first: once closed, what was written before is all there is.
    let isClosed = closedFlag.load(ordering: .acquiring)
    let available = written.load(ordering: .acquiring) - consumer.value.read
    var moved = 0
    var movedData = 0
    var movedDataBytes = 0
    while moved < available, taken < max, bytes < maxBytes {
      let frame = consumer.value.reader.pop(spare: spare)
      let size = frame.byteCount
      let isData = frame.kind == .data
      if isData {
        movedData += 1
        movedDataBytes += size
      }
      countDelivered(size: size, isData: isData)
      moved += 1
      taken += 1
      bytes += size
      append(frame)
    }
    consumer.value.read += moved
    if movedData > 0 {
      // Only this thread writes the totals: a relaxed load reads its own last store.
      let totalBytes = takenBytes.load(ordering: .relaxed) + movedDataBytes
      takenBytes.store(totalBytes, ordering: .sequentiallyConsistent)
      takenData.store(takenData.load(ordering: .relaxed) + movedData, ordering: .sequentiallyConsistent)
    }
    let ended = isClosed && moved == available
    if ended { consumer.value.sawEnd = true }
    return ended
  }

  /// Whether the consumer has something new here: a frame, or the edge's end
  /// (sequentially consistent, for the wait's last look).
  var hasNewsForConsumer: Bool {
    guard isLockFree else { return false }
    if closedFlag.load(ordering: .sequentiallyConsistent) && !consumer.value.sawEnd { return true }
    return written.load(ordering: .sequentiallyConsistent) != consumer.value.read
  }

  // MARK: - Latest edges, behind the lock

  private func sendLocked(_ frame: consuming Frame) -> SendResult {
    let size = frame.byteCount
    let isData = frame.kind == .data
    let inbox = self.inbox
    lock._withUnsafeGuaranteedRef { $0.lock() }
    defer { lock._withUnsafeGuaranteedRef { $0.unlock() } }
    if inbox.isClosedForSends { return .closed }
    let result = isData ? evictLocked(size: size) : .queued
    switch result {
    case .queued, .queuedDroppingOldest: appendLocked(consume frame, size: size, isData: isData)
    case .dropped, .closed: break
    }
    return result
  }

  /// Applies thinning to a data frame of `size` bytes, then evicts the oldest
  /// data frames until it fits.
  private func evictLocked(size: Int) -> SendResult {
    if let thinned = thin() { return thinned }
    var result = SendResult.queued
    while isFullLocked(adding: size), let index = queue.firstIndex(where: { $0.pointee.kind == .data }) {
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

  /// The producer is done: once the queue is empty the consumer sees its end.
  public func close() {
    if isLockFree { closedFlag.store(true, ordering: .sequentiallyConsistent) }
    inbox.lock.withLock {
      closed = true
      inbox.lock.signalReadable()
    }
  }

  private func isFullLocked(adding size: Int) -> Bool {
    guard dataFrames > 0 else { return false }
    return dataFrames >= qos.bufferFrames || UInt64(bytes + size) > qos.bufferBytes
  }

  private func appendLocked(_ frame: consuming Frame, size: Int, isData: Bool) {
    queue.append(consume frame)
    if isData {
      dataFrames += 1
      bytes += size
    }
    countEnqueued(bytes: size)
    lock._withUnsafeGuaranteedRef { $0.signalReadable() }
  }

  func popLocked() -> Frame? {
    guard let frame = queue.popFirst() else { return nil }
    let size = frame.byteCount
    let isData = frame.kind == .data
    if isData {
      dataFrames -= 1
      bytes -= size
    }
    countDelivered(size: size, isData: isData)
    return frame
  }

  // MARK: - Counting, for both kinds of edge

  /// The producer queued `frames` frames of `bytes` payload bytes in all.
  private func countEnqueued(frames: Int = 1, bytes: Int) {
    counters.enqueued.bump(frames)
    counters.enqueuedBytes.bump(bytes)
  }

  /// The consumer took a frame of `size` payload bytes.
  private func countDelivered(size: Int, isData: Bool) {
    if isData { counters.deliveredData.bump() }
    counters.delivered.bump()
    counters.deliveredBytes.bump(size)
  }

  /// Counts the data frames still queued as dropped for `reason` (they stay in
  /// the queue, so the summary's 'left' column shows them too). With the lock held.
  ///
  /// A lock-free edge counts from both sides' published totals. Neither side
  /// takes the lock, so a batch the consumer takes at the very moment of an
  /// abort may be counted here and again as abandoned by its node, and one the
  /// producer is writing then is published after this count: the totals of an
  /// aborted run can be off by a batch, never those of a drained one.
  func countLeft(as reason: DropReason) {
    let left =
      isLockFree
      ? writtenData.load(ordering: .sequentiallyConsistent)
        - takenData.load(ordering: .sequentiallyConsistent)
      : queue.count { $0.pointee.kind == .data }
    if left > 0 { counters.countDrop(reason, left) }
  }
}
