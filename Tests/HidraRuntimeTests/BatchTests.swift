import Foundation
import HidraGraph
import HidraRuntime
import Testing

/// Frames emitted in batches (`FrameBatch`, `Output.send(batch:)`): every edge
/// applies its QoS to each frame as if they came one by one, and a batch costs
/// the consumer one publication, not one per frame.
@Suite("Batches")
struct BatchTests {
  /// Sends `frames` through a new output over `edges`, in batches as a source
  /// fills them (emitted when full, and the rest at the end), on another thread
  /// with a bound (see `within`). Returns what each `send(batch:)` returned, or
  /// nil when the sends did not finish in time. Closes the edges after.
  static func sendBatched(
    _ frames: [Frame], to edges: [EdgeQueue], counters: NodeCounters? = nil, aborting inboxes: [Inbox],
    seconds: Double = 5, sourceLocation: Testing.SourceLocation = #_sourceLocation
  ) -> [Bool]? {
    within(seconds, aborting: inboxes, sourceLocation: sourceLocation) {
      let output = Output(edges: edges, counters: counters)
      var results: [Bool] = []
      var batch = FrameBatch()
      for frame in frames {
        batch.append(frame)
        if batch.isFull { results.append(output.send(batch: &batch)) }
      }
      if !batch.isEmpty { results.append(output.send(batch: &batch)) }
      output.close()
      return results
    }
  }

  /// Starts sending one batch of ten data frames into `edge` (guaranteed, a
  /// buffer of 4) on another thread, and checks that the send is still waiting
  /// 100 ms later. Returns where its results will be, and the thread.
  static func batchOfTenWaiting(
    on edge: EdgeQueue, _ inbox: Inbox, sourceLocation: Testing.SourceLocation = #_sourceLocation
  ) -> (Box<[Bool]?>, Worker) {
    let sent = Box<[Bool]?>(nil)
    let producer = Worker {
      sent.set(Self.sendBatched((0..<10).map { dataFrame($0) }, to: [edge], aborting: [inbox], seconds: 10))
    }
    Thread.sleep(forTimeInterval: 0.1)
    #expect(
      sent.get() == nil, "a batch of 10 went into a guaranteed edge of 4 without a reader",
      sourceLocation: sourceLocation)
    return (sent, producer)
  }

  @Test("latest, in batches: 10,000 frames into a buffer of 4 with no reader keep the newest 4")
  func latestKeepsNewest() {
    let (inbox, edge, counters) = EdgeQueueTests.edge(EdgeQoS(delivery: .latest, bufferFrames: 4))
    let results = Self.sendBatched(EdgeQueueTests.series(10_000), to: [edge], aborting: [inbox])
    #expect(results?.count == 157, "10,002 frames in batches of 64")
    #expect(results?.allSatisfy { $0 } == true)
    let frames = drain(inbox)
    #expect(describe(frames) == ["start1", "9996", "9997", "9998", "9999", "end1"])
    #expect(counters.dropped(.oldest) == 9996)
    #expect(counters.offered.load(ordering: .relaxed) == 10_000)
    #expect(counters.delivered.load(ordering: .relaxed) == 6)
    #expect(counters.snapshot().totalDropped == 9996)
  }

  @Test("best-effort, in batches: 10,000 frames into a buffer of 4 with no reader keep the first 4")
  func bestEffortKeepsFirst() {
    let (inbox, edge, counters) = EdgeQueueTests.edge(EdgeQoS(delivery: .bestEffort, bufferFrames: 4))
    let results = Self.sendBatched(EdgeQueueTests.series(10_000), to: [edge], aborting: [inbox])
    #expect(results?.allSatisfy { $0 } == true)
    #expect(describe(drain(inbox)) == ["start1", "0", "1", "2", "3", "end1"])
    #expect(counters.dropped(.full) == 9996)
    #expect(counters.offered.load(ordering: .relaxed) == 10_000)
    #expect(counters.delivered.load(ordering: .relaxed) == 6)
  }

  @Test("guaranteed: a producer waiting in the middle of a batch has published the frames before the wait")
  func guaranteedPublishesBeforeWaiting() {
    let (inbox, edge, counters) = EdgeQueueTests.edge(EdgeQoS(delivery: .guaranteed, bufferFrames: 4))
    let (sent, producer) = Self.batchOfTenWaiting(on: edge, inbox)
    // The four frames written before the producer waited are there to take: had
    // they not been published, this would find nothing and the producer would
    // wait for ever.
    let first = receiveWithin(inbox, seconds: 2)
    #expect(first.map { dataIndices($0.frames) } == [0, 1, 2, 3])
    let rest = drain(inbox)
    let joined = producer.join(seconds: 5)
    #expect(joined)
    if !joined { inbox.abort() }
    #expect(dataIndices(rest) == Array(4..<10))
    #expect(sent.get() == [true])
    #expect(counters.offered.load(ordering: .relaxed) == 10)
    #expect(counters.delivered.load(ordering: .relaxed) == 10)
    #expect(counters.blockedNanos.load(ordering: .relaxed) > 0)
  }

  @Test("guaranteed: 10,000 frames in batches of 64 through a buffer of 4 arrive complete and in order")
  func guaranteedDeliversEverything() {
    let (inbox, edge, counters) = EdgeQueueTests.edge(EdgeQoS(delivery: .guaranteed, bufferFrames: 4))
    let sent = Box<[Bool]?>(nil)
    let producer = Worker {
      sent.set(Self.sendBatched(EdgeQueueTests.series(10_000), to: [edge], aborting: [inbox], seconds: 20))
    }
    let frames = drain(inbox, seconds: 20, max: 3)
    let joined = producer.join(seconds: 5)
    #expect(joined)
    if !joined { inbox.abort() }
    #expect(sent.get()?.allSatisfy { $0 } == true)
    #expect(frames.count == 10_002)
    #expect(frames.first?.kind == .seriesStart)
    #expect(frames.last?.kind == .seriesEnd)
    #expect(dataIndices(frames) == Array(0..<10_000))
    #expect(counters.snapshot().totalDropped == 0)
  }

  @Test(
    "batches that fit as a whole are written whole: 10,000 frames across many chunks arrive in order, counted",
    arguments: [Delivery.guaranteed, .bestEffort])
  func batchesThatFitArriveWhole(delivery: Delivery) {
    let (inbox, edge, counters) = EdgeQueueTests.edge(EdgeQoS(delivery: delivery, bufferFrames: 20_000))
    let results = Self.sendBatched(EdgeQueueTests.series(10_000), to: [edge], aborting: [inbox])
    #expect(results?.count == 157 && results?.allSatisfy { $0 } == true)
    let frames = drain(inbox, max: 1000)
    #expect(frames.count == 10_002)
    #expect(describe(Array(frames.prefix(2))) == ["start1", "0"])
    #expect(describe(Array(frames.suffix(2))) == ["9999", "end1"])
    #expect(dataIndices(frames) == Array(0..<10_000))
    #expect(counters.offered.load(ordering: .relaxed) == 10_000)
    #expect(counters.delivered.load(ordering: .relaxed) == 10_002)
    #expect(counters.deliveredBytes.load(ordering: .relaxed) == 10_000 * 16)
    #expect(counters.snapshot().totalDropped == 0)
  }

  @Test("best-effort: a batch that no longer fits as a whole is admitted frame by frame up to the bound")
  func bestEffortFillsToTheBoundAcrossBatches() {
    // Frames: the first batch (the series start and 63) fits whole, the second
    // only in part. Bytes: 100 frames of 16 bytes fill 1,600.
    for qos in [
      EdgeQoS(delivery: .bestEffort, bufferFrames: 100),
      EdgeQoS(delivery: .bestEffort, bufferFrames: 1000, bufferBytes: 1600),
    ] {
      let (inbox, edge, counters) = EdgeQueueTests.edge(qos)
      let results = Self.sendBatched(EdgeQueueTests.series(10_000), to: [edge], aborting: [inbox])
      #expect(results?.allSatisfy { $0 } == true)
      let frames = drain(inbox, max: 1000)
      #expect(dataIndices(frames) == Array(0..<100), "\(qos)")
      #expect(describe(frames).last == "end1")
      #expect(counters.dropped(.full) == 9900)
      #expect(counters.offered.load(ordering: .relaxed) == 10_000)
    }
  }

  @Test(
    "a consumer gone in the middle of a batch: every data frame of it is counted, as delivered or dropped")
  func consumerGoneMidBatch() {
    let (inbox, edge, counters) = EdgeQueueTests.edge(EdgeQoS(delivery: .guaranteed, bufferFrames: 4))
    let (sent, producer) = Self.batchOfTenWaiting(on: edge, inbox)
    inbox.detachConsumer()
    let joined = producer.join(seconds: 5)
    #expect(joined)
    if !joined { inbox.abort() }
    #expect(sent.get() == [false], "the output reports the edge closed")
    #expect(counters.offered.load(ordering: .relaxed) == 10)
    #expect(
      counters.dropped(.closed) == 10,
      "four queued and never read, the fifth that waited, and the five the batch still held")
    #expect(counters.delivered.load(ordering: .relaxed) == 0)
  }

  @Test(
    "a batch sent after the consumer has gone: every data frame counted offered and dropped, on any mode",
    arguments: [Delivery.guaranteed, .bestEffort, .latest])
  func batchAfterConsumerGone(delivery: Delivery) {
    // More than the buffer holds, with a control frame (frame by frame); and
    // three data frames that fit whole (admitted with one look on the
    // lock-free modes).
    for (frames, data) in [
      ((0..<5).map { dataFrame($0) } + [.seriesEnd(1, frames: 5)], 5), ((0..<3).map { dataFrame($0) }, 3),
    ] {
      let (inbox, edge, counters) = EdgeQueueTests.edge(EdgeQoS(delivery: delivery, bufferFrames: 4))
      inbox.detachConsumer()
      #expect(Self.sendBatched(frames, to: [edge], aborting: [inbox]) == [false])
      #expect(counters.offered.load(ordering: .relaxed) == data)
      #expect(counters.dropped(.closed) == data)
      #expect(counters.queuedFrames == 0, "nothing was queued for a consumer that has gone")
    }
  }

  @Test("a batch broadcast to two edges: both get every frame, with the very same payloads")
  func broadcastSharesPayloads() {
    let (inbox0, edge0, counters0) = EdgeQueueTests.edge(EdgeQoS())
    let (inbox1, edge1, counters1) = EdgeQueueTests.edge(EdgeQoS(delivery: .bestEffort, bufferFrames: 1000))
    let frames = EdgeQueueTests.series(100)
    let node = NodeCounters(node: "source", type: "test-source")
    let results = Self.sendBatched(frames, to: [edge0, edge1], counters: node, aborting: [inbox0, inbox1])
    #expect(results == [true, true])
    let first = drain(inbox0)
    let second = drain(inbox1)
    #expect(describe(first) == describe(frames))
    #expect(describe(second) == describe(frames))
    for (a, b) in zip(first, second) where a.kind == .data {
      #expect(a.parts.first === b.parts.first, "frame \(a.meta.frame): the payload is shared, not copied")
    }
    #expect(node.framesOut.load(ordering: .relaxed) == 102)
    #expect(node.bytesOut.load(ordering: .relaxed) == 100 * 16)
    #expect(counters0.delivered.load(ordering: .relaxed) == 102)
    #expect(counters1.delivered.load(ordering: .relaxed) == 102)
  }

  @Test("an output remembers the open series from a batch, and replays its start to a late edge")
  func batchOpensSeriesForLateEdges() {
    let (firstInbox, firstEdge, _) = EdgeQueueTests.edge(EdgeQoS())
    let (lateInbox, lateEdge, _) = EdgeQueueTests.edge(EdgeQoS())
    let open = within(aborting: [firstInbox, lateInbox]) {
      let output = Output(edges: [firstEdge])
      var batch = FrameBatch()
      batch.append(.seriesStart(1))
      batch.append(dataFrame(0))
      output.send(batch: &batch)
      let open = output.openSeries?.meta.series
      output.attach(lateEdge)
      batch.append(dataFrame(1))
      batch.append(.seriesEnd(1, frames: 2))
      output.send(batch: &batch)
      output.close()
      return open
    }
    #expect(open == 1)
    #expect(describe(drain(firstInbox)) == ["start1", "0", "1", "end1"])
    #expect(describe(drain(lateInbox)) == ["start1", "1", "end1"])
  }

  @Test("tracked frames in a batch: the ledger completes once every guaranteed copy is confirmed")
  func trackedFramesInABatch() {
    let outcome = ReceiptTests.Outcome()
    let (output, inboxes) = ReceiptTests.output([.guaranteed, .guaranteed, .bestEffort])
    do {
      var batch = FrameBatch()
      for index in 0..<3 {
        var frame = dataFrame(index)
        frame.track(outcome.ledger())
        batch.append(frame)
      }
      let sent = output.send(batch: &batch)
      let (left, leftBytes) = (batch.count, batch.byteCount)
      #expect(sent)
      #expect(left == 0 && leftBytes == 0, "a sent batch is empty")
    }
    #expect(outcome.results.isEmpty, "nothing is confirmed yet")
    let first = ReceiptTests.take(inboxes[0])
    let second = ReceiptTests.take(inboxes[1])
    let lossy = ReceiptTests.take(inboxes[2])
    #expect(first.count == 3 && second.count == 3 && lossy.count == 3)
    #expect(lossy.allSatisfy { !$0.isTracked }, "a best-effort edge carries no obligation")
    for frame in first { frame.confirm() }
    #expect(outcome.results.isEmpty, "one guaranteed sink is still to confirm")
    for frame in second { frame.confirm() }
    #expect(outcome.results == [true, true, true])
  }

  @Test("FrameBatch: full at 64 frames, or at 1 MiB of payload")
  func batchBounds() {
    var batch = FrameBatch()
    for index in 0..<63 { batch.append(dataFrame(index)) }
    let fullAt63 = batch.isFull
    batch.append(dataFrame(63))
    let (fullAt64, count) = (batch.isFull, batch.count)
    #expect(!fullAt63)
    #expect(fullAt64 && count == FrameBatch.maxFrames)

    var large = FrameBatch()
    large.append(dataFrame(0, bytes: FrameBatch.maxBytes - 1))
    let fullBelow = large.isFull
    large.append(dataFrame(1, bytes: 1))
    let (fullAt, largeCount, bytes) = (large.isFull, large.count, large.byteCount)
    #expect(!fullBelow)
    #expect(fullAt && largeCount == 2 && bytes == FrameBatch.maxBytes)
  }
}
