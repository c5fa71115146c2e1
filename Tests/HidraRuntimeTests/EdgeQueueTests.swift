import Foundation
import HidraGraph
import HidraRuntime
import Testing

/// The per-edge QoS rules of docs/qos.md, tested on `Inbox` and `EdgeQueue`
/// directly, with one producer and one consumer taking turns wherever the rule
/// allows (only back-pressure, abort and wake-ups need both at once).
///
/// Sends are made through `sendAll`, which runs them on a helper thread with a
/// bound while the test waits: the sequence is the same as on one thread, but a
/// send that waits where it should not fails the test instead of hanging it.
@Suite("Edge queues")
struct EdgeQueueTests {
  /// An inbox with one edge.
  static func edge(_ qos: EdgeQoS, paceBytes: Int? = nil) -> (Inbox, EdgeQueue, EdgeCounters) {
    let inbox = Inbox()
    let counters = EdgeCounters(from: "producer", to: "consumer")
    return (inbox, inbox.addEdge(qos: qos, counters: counters, paceBytes: paceBytes), counters)
  }

  /// Sends a fourth 300-byte data frame (index 3) on another thread and checks
  /// that it waits (`whileWaiting` runs then); takes `count` frames, and checks
  /// that the send then goes through. Returns the frames taken.
  static func expectSendWaitsUntilTaking(
    _ count: Int, _ edge: EdgeQueue, _ inbox: Inbox, _ comment: Comment, whileWaiting: () -> Void = {},
    sourceLocation: Testing.SourceLocation = #_sourceLocation
  ) -> [Frame]? {
    let fourth = Box<SendResult?>(nil)
    let producer = Worker { fourth.set(edge.send(dataFrame(3, bytes: 300))) }
    Thread.sleep(forTimeInterval: 0.1)
    #expect(fourth.get() == nil, comment, sourceLocation: sourceLocation)
    whileWaiting()
    let taken = inbox.receive(timeoutNanos: 1_000_000_000, max: count)
    let joined = producer.join(seconds: 5)
    #expect(joined, sourceLocation: sourceLocation)
    if !joined { inbox.abort() }
    #expect(fourth.get() == .queued, sourceLocation: sourceLocation)
    return taken
  }

  /// Series 1: its start, `count` data frames stamped 0..<count, its end.
  static func series(_ count: Int, bytes: Int = 16) -> [Frame] {
    [.seriesStart(1)] + (0..<count).map { dataFrame($0, bytes: bytes) } + [.seriesEnd(1, frames: count)]
  }

  // MARK: - Delivery modes

  @Test("latest keeps the newest frames of a burst with no reader")
  func latestKeepsNewest() {
    let (inbox, edge, counters) = Self.edge(EdgeQoS(delivery: .latest, bufferFrames: 4))
    let results = sendAll(edge, Self.series(10_000), inbox: inbox)
    edge.close()

    #expect(results.count == 10_002)
    #expect(results.first == .queued)
    #expect(results.last == .queued, "the series end")
    #expect(results.dropFirst().prefix(4).allSatisfy { $0 == .queued })
    #expect(results.dropFirst(5).dropLast().allSatisfy { $0 == .queuedDroppingOldest })
    #expect(counters.queuedFrames == 6)
    #expect(counters.queuedBytes == 4 * 16)

    let frames = drain(inbox)
    #expect(describe(frames) == ["start1", "9996", "9997", "9998", "9999", "end1"])
    #expect(frames.filter { $0.kind == .data }.map(\.meta.frame) == [9996, 9997, 9998, 9999])
    #expect(counters.dropped(.oldest) == 9996)
    #expect(counters.offered.load(ordering: .relaxed) == 10_000)
    #expect(counters.delivered.load(ordering: .relaxed) == 6)
    #expect(counters.deliveredBytes.load(ordering: .relaxed) == 4 * 16)
    #expect(counters.snapshot().totalDropped == 9996)
    #expect(counters.queuedFrames == 0)
    #expect(counters.queuedBytes == 0)
  }

  @Test("best-effort keeps the first frames of a burst with no reader")
  func bestEffortKeepsFirst() {
    let (inbox, edge, counters) = Self.edge(EdgeQoS(delivery: .bestEffort, bufferFrames: 4))
    let results = sendAll(edge, Self.series(10_000), inbox: inbox)
    edge.close()

    #expect(results.count == 10_002)
    #expect(results.first == .queued)
    #expect(results.last == .queued, "the series end")
    #expect(results.dropFirst().prefix(4).allSatisfy { $0 == .queued })
    #expect(results.dropFirst(5).dropLast().allSatisfy { $0 == .dropped(.full) })
    let frames = drain(inbox)
    #expect(describe(frames) == ["start1", "0", "1", "2", "3", "end1"])
    #expect(counters.dropped(.full) == 9996)
    #expect(counters.offered.load(ordering: .relaxed) == 10_000)
    #expect(counters.delivered.load(ordering: .relaxed) == 6)
    #expect(counters.snapshot().totalDropped == 9996)
  }

  @Test("guaranteed blocks its producer when full, then delivers everything in order")
  func guaranteedBackPressure() {
    let (inbox, edge, counters) = Self.edge(EdgeQoS(delivery: .guaranteed, bufferFrames: 4))
    let filling = sendAll(edge, [.seriesStart(1)] + (0..<4).map { dataFrame($0) }, inbox: inbox)
    #expect(filling == Array(repeating: .queued, count: 5))

    // The 5th data frame (and everything after it) goes from another thread.
    let returned = Counter()
    let notQueued = Counter()
    let producer = Worker {
      for index in 4..<10_000 {
        if edge.send(dataFrame(index)) != .queued { notQueued.increment() }
        returned.increment()
      }
      edge.send(.seriesEnd(1, frames: 10_000))
      edge.close()
    }
    // Nobody reads: the 5th send must still be waiting.
    Thread.sleep(forTimeInterval: 0.1)
    #expect(returned.value == 0, "a send on a full guaranteed edge returned without a reader")
    #expect(counters.queuedFrames == 5)

    let frames = drain(inbox, seconds: 10)
    let joined = producer.join(seconds: 5)
    #expect(joined)
    if !joined { inbox.abort() }

    #expect(frames.count == 10_002)
    #expect(frames.first?.kind == .seriesStart)
    #expect(frames.last?.kind == .seriesEnd)
    #expect(dataIndices(frames) == Array(0..<10_000))
    #expect(notQueued.value == 0)
    #expect(counters.offered.load(ordering: .relaxed) == 10_000)
    #expect(counters.delivered.load(ordering: .relaxed) == 10_002)
    #expect(counters.snapshot().totalDropped == 0)
    #expect(counters.blockedNanos.load(ordering: .relaxed) > 0)
  }

  // MARK: - Byte bounds

  @Test("best-effort: a byte bound of 1000 holds three 300-byte frames")
  func byteBoundBestEffort() {
    let (inbox, edge, counters) = Self.edge(
      EdgeQoS(delivery: .bestEffort, bufferFrames: 1000, bufferBytes: 1000))
    let results = sendAll(edge, (0..<4).map { dataFrame($0, bytes: 300) }, inbox: inbox)
    #expect(results == [.queued, .queued, .queued, .dropped(.full)])
    #expect(counters.queuedBytes == 900)
    #expect(counters.queuedFrames == 3)
    edge.close()
    #expect(dataIndices(drain(inbox)) == [0, 1, 2])
    #expect(counters.dropped(.full) == 1)
  }

  @Test("latest: a byte bound of 1000 holds three 300-byte frames, evicting the oldest")
  func byteBoundLatest() {
    let (inbox, edge, counters) = Self.edge(EdgeQoS(delivery: .latest, bufferFrames: 1000, bufferBytes: 1000))
    let results = sendAll(edge, (0..<4).map { dataFrame($0, bytes: 300) }, inbox: inbox)
    #expect(results == [.queued, .queued, .queued, .queuedDroppingOldest])
    #expect(counters.queuedBytes == 900)
    edge.close()
    #expect(dataIndices(drain(inbox)) == [1, 2, 3])
    #expect(counters.dropped(.oldest) == 1)
  }

  @Test("guaranteed: a byte bound of 1000 makes the fourth 300-byte frame wait")
  func byteBoundGuaranteed() {
    let (inbox, edge, counters) = Self.edge(
      EdgeQoS(delivery: .guaranteed, bufferFrames: 1000, bufferBytes: 1000))
    let filling = sendAll(edge, (0..<3).map { dataFrame($0, bytes: 300) }, inbox: inbox)
    #expect(filling == [.queued, .queued, .queued])
    // Taking one frame makes room for exactly one more.
    let first = Self.expectSendWaitsUntilTaking(1, edge, inbox, "the fourth frame passed the byte bound")
    #expect(first.map(dataIndices) == [0])
    edge.close()
    #expect(dataIndices(drain(inbox)) == [1, 2, 3])
    #expect(counters.snapshot().totalDropped == 0)
  }

  @Test("paced guaranteed: the producer waits at the pace's bytes although the buffer has room")
  func pacedGuaranteedWaitsEarly() {
    let (inbox, edge, counters) = Self.edge(
      EdgeQoS(delivery: .guaranteed, bufferFrames: 1000, bufferBytes: 1 << 30), paceBytes: 1000)
    let filling = sendAll(edge, [.seriesStart(1)] + (0..<3).map { dataFrame($0, bytes: 300) }, inbox: inbox)
    #expect(filling == [.queued, .queued, .queued, .queued])
    let first = Self.expectSendWaitsUntilTaking(2, edge, inbox, "the fourth frame passed the pace") {
      #expect(counters.queuedBytes == 900)
    }
    #expect(first.map(describe) == ["start1", "0"])
    edge.close()
    #expect(dataIndices(drain(inbox)) == [1, 2, 3])
    #expect(counters.snapshot().totalDropped == 0)

    // A frame larger than the pace still passes an empty queue.
    let (other, large, _) = Self.edge(EdgeQoS(delivery: .guaranteed), paceBytes: 1000)
    #expect(sendWithin(2, large, dataFrame(9, bytes: 5000), inbox: other) == .queued)
  }

  @Test("a pace does not apply to best-effort and latest edges: they keep their whole buffer")
  func paceLeavesOtherModesAlone() {
    for delivery in [Delivery.bestEffort, .latest] {
      let (inbox, edge, counters) = Self.edge(EdgeQoS(delivery: delivery, bufferFrames: 10), paceBytes: 1000)
      let results = sendAll(edge, (0..<10).map { dataFrame($0, bytes: 300) }, inbox: inbox)
      #expect(results == Array(repeating: .queued, count: 10), "\(delivery)")
      #expect(counters.queuedBytes == 3000)
      #expect(counters.snapshot().totalDropped == 0)
    }
  }

  @Test(
    "a frame larger than the byte bound passes an empty queue",
    arguments: [Delivery.guaranteed, .bestEffort, .latest])
  func oversizedFramePassesEmptyQueue(delivery: Delivery) {
    let (inbox, edge, counters) = Self.edge(EdgeQoS(delivery: delivery, bufferFrames: 4, bufferBytes: 1000))
    // On another thread: were the rule broken, a guaranteed send would wait forever.
    #expect(sendWithin(2, edge, dataFrame(0, bytes: 5000), inbox: inbox) == .queued)
    #expect(counters.queuedBytes == 5000)
    edge.close()
    let frames = drain(inbox)
    #expect(dataIndices(frames) == [0])
    #expect(frames.first?.byteCount == 5000)
    #expect(counters.snapshot().totalDropped == 0)
  }

  @Test("latest: a frame larger than the byte bound evicts every queued frame and is kept")
  func oversizedFrameEvictsAllOnLatest() {
    let (inbox, edge, counters) = Self.edge(EdgeQoS(delivery: .latest, bufferFrames: 1000, bufferBytes: 1000))
    let frames = (0..<3).map { dataFrame($0, bytes: 300) } + [dataFrame(3, bytes: 5000)]
    #expect(sendAll(edge, frames, inbox: inbox) == [.queued, .queued, .queued, .queuedDroppingOldest])
    edge.close()
    #expect(dataIndices(drain(inbox)) == [3])
    #expect(counters.dropped(.oldest) == 3)
  }

  // MARK: - Control frames

  @Test("best-effort: control frames pass a full, sampled, rate-limited edge and do not count against it")
  func controlFramesPassBestEffort() {
    let (inbox, edge, counters) = Self.edge(
      EdgeQoS(delivery: .bestEffort, bufferFrames: 2, sampleEvery: 2, maxRate: 1))
    // Control frames first: they must not use up the two data slots.
    let starts = (1...10).map { Frame.seriesStart($0) }
    let results = sendAll(
      edge, starts + [dataFrame(0), dataFrame(1), dataFrame(2), .seriesEnd(10, frames: 3)], inbox: inbox)
    edge.close()
    #expect(results.prefix(10).allSatisfy { $0 == .queued })
    #expect(
      results.dropFirst(10) == [
        .queued,  // kept by the sample and the rate
        .dropped(.sample), .dropped(.rate),
        .queued,  // the series end
      ])

    let frames = drain(inbox)
    #expect(frames.filter { $0.kind == .seriesStart }.map(\.meta.series) == Array(1...10))
    #expect(frames.filter { $0.kind == .seriesEnd }.count == 1)
    #expect(dataIndices(frames) == [0])
    #expect(counters.offered.load(ordering: .relaxed) == 3, "offered counts data frames only")
    #expect(counters.dropped(.sample) == 1)
    #expect(counters.dropped(.rate) == 1)
    #expect(counters.delivered.load(ordering: .relaxed) == 12)
  }

  @Test("best-effort: control frames are queued while the data buffer is full")
  func controlFramesPassFullBestEffort() {
    let (inbox, edge, counters) = Self.edge(EdgeQoS(delivery: .bestEffort, bufferFrames: 1))
    let results = sendAll(
      edge, [dataFrame(0), dataFrame(1), .seriesEnd(1, frames: 2), .seriesStart(2), dataFrame(2)],
      inbox: inbox)
    edge.close()
    #expect(results == [.queued, .dropped(.full), .queued, .queued, .dropped(.full)])
    #expect(describe(drain(inbox)) == ["0", "end1", "start2"])
    #expect(counters.dropped(.full) == 2)
  }

  @Test("latest: eviction takes data frames only; control frames stay in order")
  func latestNeverEvictsControlFrames() {
    let (inbox, edge, counters) = Self.edge(EdgeQoS(delivery: .latest, bufferFrames: 1))
    let frames: [Frame] = [
      .seriesStart(1), dataFrame(0), .seriesEnd(1, frames: 1), .seriesStart(2), dataFrame(1), dataFrame(2),
      .seriesEnd(2, frames: 2),
    ]
    let results = sendAll(edge, frames, inbox: inbox)
    edge.close()
    #expect(
      results == [.queued, .queued, .queued, .queued, .queuedDroppingOldest, .queuedDroppingOldest, .queued])
    #expect(describe(drain(inbox)) == ["start1", "end1", "start2", "2", "end2"])
    #expect(counters.dropped(.oldest) == 2)
  }

  @Test("guaranteed: control frames do not wait on a full edge")
  func controlFramesDoNotWaitOnGuaranteed() {
    let (inbox, edge, counters) = Self.edge(EdgeQoS(delivery: .guaranteed, bufferFrames: 1))
    #expect(sendAll(edge, [.seriesStart(1), dataFrame(0)], inbox: inbox) == [.queued, .queued])
    #expect(sendWithin(2, edge, .seriesEnd(1, frames: 1), inbox: inbox) == .queued)
    #expect(sendWithin(2, edge, .seriesStart(2), inbox: inbox) == .queued)
    edge.close()
    #expect(describe(drain(inbox)) == ["start1", "0", "end1", "start2"])
    #expect(counters.blockedNanos.load(ordering: .relaxed) == 0)
  }

  // MARK: - Thinning

  @Test("sample every 10 keeps frames 0, 10, 20, ...")
  func sampleEvery10() {
    let (inbox, edge, counters) = Self.edge(
      EdgeQoS(delivery: .bestEffort, bufferFrames: 1000, sampleEvery: 10))
    let results = sendAll(edge, Self.series(1000), inbox: inbox)
    edge.close()
    #expect(results.count == 1002)
    #expect(results.first == .queued)
    #expect(results.last == .queued)
    for (index, result) in results.dropFirst().dropLast().enumerated() {
      #expect(result == (index % 10 == 0 ? .queued : .dropped(.sample)), "frame \(index)")
    }
    let frames = drain(inbox)
    #expect(dataIndices(frames) == Array(stride(from: 0, to: 1000, by: 10)))
    #expect(frames.first?.kind == .seriesStart)
    #expect(frames.last?.kind == .seriesEnd)
    #expect(counters.dropped(.sample) == 900)
    #expect(counters.offered.load(ordering: .relaxed) == 1000)
    #expect(counters.delivered.load(ordering: .relaxed) == 102)
    #expect(counters.snapshot().totalDropped == 900)
  }

  @Test("rate max 1/s passes one of 100 frames sent at once")
  func rateOnePerSecond() {
    let (inbox, edge, counters) = Self.edge(EdgeQoS(delivery: .bestEffort, bufferFrames: 1000, maxRate: 1))
    // The frames are made first: sending 100 takes far less than the 1 s interval.
    let results = sendAll(edge, Self.series(100), inbox: inbox)
    edge.close()
    #expect(results.count == 102)
    #expect(results.prefix(2) == [.queued, .queued], "the start and the first data frame")
    #expect(results.dropFirst(2).dropLast().allSatisfy { $0 == .dropped(.rate) })
    #expect(results.last == .queued, "the series end")
    #expect(describe(drain(inbox)) == ["start1", "0", "end1"])
    #expect(counters.dropped(.rate) == 99)
    #expect(counters.offered.load(ordering: .relaxed) == 100)
    #expect(counters.snapshot().totalDropped == 99)
  }

  // MARK: - Output

  @Test("an edge attached mid-series first gets the series start, then what follows")
  func attachMidSeriesReplaysHeader() {
    let (firstInbox, firstEdge, _) = Self.edge(EdgeQoS())
    let (lateInbox, lateEdge, _) = Self.edge(EdgeQoS())
    let (laterInbox, laterEdge, _) = Self.edge(EdgeQoS())
    let header = Payload(copying: Array(#"{"detector":"test"}"#.utf8))
    let inboxes = [firstInbox, lateInbox, laterInbox]
    let seen = within(aborting: inboxes) {
      let output = Output(edges: [firstEdge])
      output.send(.seriesStart(1, header: header))
      output.send(dataFrame(0))
      output.send(dataFrame(1))
      let openMidSeries = output.openSeries?.meta.series
      output.attach(lateEdge)
      let branches = output.branchCount
      output.send(dataFrame(2))
      output.send(.seriesEnd(1, frames: 3))
      let openAfterEnd = output.openSeries?.meta.series
      // Attached after the series ended: no stale header.
      output.attach(laterEdge)
      output.send(.seriesStart(2))
      output.send(dataFrame(3, series: 2))
      output.send(.seriesEnd(2, frames: 1))
      output.close()
      return (openMidSeries, branches, openAfterEnd)
    }
    #expect(seen?.0 == 1, "the open series is remembered")
    #expect(seen?.1 == 2)
    #expect(seen?.2 == nil, "a series end forgets the open series")

    #expect(describe(drain(firstInbox)) == ["start1", "0", "1", "2", "end1", "start2", "3", "end2"])
    let late = drain(lateInbox)
    #expect(describe(late) == ["start1", "2", "end1", "start2", "3", "end2"])
    #expect(late.first?.parts.first === header, "the replayed start carries the detector header")
    #expect(describe(drain(laterInbox)) == ["start2", "3", "end2"])
  }

  @Test("Output.send(toBranch:) sends a data frame to one branch; a closed branch does not stop the others")
  func outputBranchesAndClosedEdges() {
    let (inbox0, edge0, _) = Self.edge(EdgeQoS())
    let (inbox1, edge1, _) = Self.edge(EdgeQoS())
    let counters = NodeCounters(node: "split", type: "split")
    let results = within(aborting: [inbox0, inbox1]) {
      let output = Output(edges: [edge0, edge1], counters: counters)
      var results = [output.send(.seriesStart(1))]
      results.append(output.send(dataFrame(0), toBranch: 1))
      results.append(output.send(dataFrame(1), toBranch: 0))
      inbox1.abort()
      results.append(output.send(dataFrame(2)))  // false: branch 1 is closed for good
      results.append(output.send(dataFrame(3), toBranch: 1))
      results.append(output.send(dataFrame(4), toBranch: 0))
      output.close()
      return results
    }
    #expect(results == [true, true, true, false, false, true])
    #expect(describe(drain(inbox0)) == ["start1", "1", "2", "4"])
    #expect(counters.framesOut.load(ordering: .relaxed) == 6)
    #expect(counters.bytesOut.load(ordering: .relaxed) == 5 * 16)
  }

  // MARK: - Abort and detach

  @Test("abort: a producer waiting on a full guaranteed edge returns .closed; queued data counts as aborted")
  func abortReleasesBlockedProducer() {
    let (inbox, edge, counters) = Self.edge(EdgeQoS(delivery: .guaranteed, bufferFrames: 4))
    let filling = sendAll(edge, [.seriesStart(1)] + (0..<4).map { dataFrame($0) }, inbox: inbox)
    #expect(filling == Array(repeating: .queued, count: 5))
    let fifth = Box<SendResult?>(nil)
    let producer = Worker { fifth.set(edge.send(dataFrame(4))) }
    Thread.sleep(forTimeInterval: 0.1)
    #expect(fifth.get() == nil, "the fifth send returned without a reader")

    inbox.abort()
    #expect(producer.join(seconds: 5))
    #expect(fifth.get() == .closed)
    #expect(
      counters.dropped(.aborted) == 5,
      "the four queued data frames (not the start) and the waiting fifth: every offered frame is accounted for"
    )
    #expect(counters.delivered.load(ordering: .relaxed) == 0)

    // After an abort nothing more is queued and the consumer's input is over.
    #expect(sendAll(edge, [dataFrame(5), .seriesEnd(1, frames: 6)], inbox: inbox) == [.closed, .closed])
    let after = receiveWithin(inbox)
    #expect(after?.more == false)
    #expect(after?.frames.isEmpty == true)
    #expect(inbox.receive(timeoutNanos: 1_000_000) == nil)
  }

  @Test("abort twice counts the queued frames once")
  func abortTwiceCountsOnce() {
    let (inbox, edge, counters) = Self.edge(EdgeQoS(delivery: .guaranteed, bufferFrames: 4))
    #expect(sendAll(edge, (0..<4).map { dataFrame($0) }, inbox: inbox) == Array(repeating: .queued, count: 4))
    inbox.abort()
    #expect(counters.dropped(.aborted) == 4)
    inbox.abort()
    #expect(counters.dropped(.aborted) == 4)
  }

  @Test("abort wakes a consumer waiting for frames")
  func abortReleasesWaitingConsumer() {
    let (inbox, _, _) = Self.edge(EdgeQoS())  // one open, empty edge
    let result = Box<Bool?>(nil)
    let consumer = Worker {
      var frames: [Frame] = []
      result.set(inbox.receive(into: &frames))
    }
    Thread.sleep(forTimeInterval: 0.05)
    #expect(result.get() == nil, "receive returned with no frame and an open edge")
    inbox.abort()
    #expect(consumer.join(seconds: 5))
    #expect(result.get() == false)
  }

  @Test("detachConsumer: a producer waiting on a full guaranteed edge returns .closed")
  func detachReleasesBlockedProducer() {
    let (inbox, edge, counters) = Self.edge(EdgeQoS(delivery: .guaranteed, bufferFrames: 4))
    #expect(sendAll(edge, (0..<4).map { dataFrame($0) }, inbox: inbox) == Array(repeating: .queued, count: 4))
    let fifth = Box<SendResult?>(nil)
    let producer = Worker { fifth.set(edge.send(dataFrame(4))) }
    Thread.sleep(forTimeInterval: 0.1)
    #expect(fifth.get() == nil, "the fifth send returned without a reader")

    inbox.detachConsumer()
    let joined = producer.join(seconds: 5)
    #expect(joined)
    if !joined { inbox.abort() }
    #expect(fifth.get() == .closed)
    #expect(
      counters.dropped(.closed) == 5, "the four frames the consumer never read and the fifth it never took")
    #expect(sendAll(edge, [dataFrame(5), .seriesEnd(1, frames: 6)], inbox: inbox) == [.closed, .closed])
  }

  @Test(
    "detachConsumer: later sends on any delivery mode return .closed",
    arguments: [Delivery.guaranteed, .bestEffort, .latest])
  func detachClosesEveryMode(delivery: Delivery) {
    let (inbox, edge, _) = Self.edge(EdgeQoS(delivery: delivery, bufferFrames: 4))
    inbox.detachConsumer()
    #expect(sendAll(edge, [dataFrame(0), .seriesStart(1)], inbox: inbox) == [.closed, .closed])
  }

  // MARK: - Zero copy

  @Test("the consumer receives the very Payload instance that was sent")
  func zeroCopyOneEdge() {
    let (inbox, edge, _) = Self.edge(EdgeQoS())
    let frame = dataFrame(7, bytes: 4096)
    let sent = frame.parts[0]
    #expect(sendWithin(5, edge, frame, inbox: inbox) == .queued)
    edge.close()
    let frames = drain(inbox)
    #expect(frames.count == 1)
    #expect(frames.first?.parts.first === sent)
  }

  @Test("a broadcast hands the same Payload instance to every edge")
  func zeroCopyBroadcast() {
    let (inbox0, edge0, _) = Self.edge(EdgeQoS())
    let (inbox1, edge1, _) = Self.edge(EdgeQoS(delivery: .latest))
    let frame = dataFrame(7, bytes: 4096)
    let sent = frame.parts[0]
    let ok = within(aborting: [inbox0, inbox1]) {
      let output = Output(edges: [edge0, edge1])
      defer { output.close() }
      return output.send(frame)
    }
    #expect(ok == true)
    let received0 = drain(inbox0)
    let received1 = drain(inbox1)
    #expect(received0.first?.parts.first === sent)
    #expect(received1.first?.parts.first === sent)
    #expect(received0.first?.parts.first?.bytes.baseAddress == sent.bytes.baseAddress)
  }

  @Test("an adopted payload is released exactly once, after the last frame holding it is gone")
  func adoptedPayloadReleasedOnce() {
    let releases = Counter()
    let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
    defer { storage.deallocate() }
    do {
      // Latest edges never wait, so this can run on the test's thread.
      let (inbox0, edge0, _) = Self.edge(EdgeQoS(delivery: .latest))
      let (inbox1, edge1, _) = Self.edge(EdgeQoS(delivery: .latest))
      let output = Output(edges: [edge0, edge1])
      do {
        let payload = Payload(adopting: UnsafeRawBufferPointer(storage)) { releases.increment() }
        output.send(Frame(kind: .data, meta: FrameMeta(), parts: [payload]))
      }
      output.close()
      let frames = drain(inbox0) + drain(inbox1)
      #expect(frames.count == 2)
      #expect(releases.value == 0, "released while frames still hold it")
    }
    #expect(releases.value == 1)
  }

  // MARK: - Several edges into one inbox

  @Test("an inbox merges its edges; its input ends only when every edge is closed and drained")
  func severalEdgesOneInbox() {
    let inbox = Inbox()
    let countersA = EdgeCounters(from: "a", to: "merge")
    let countersB = EdgeCounters(from: "b", to: "merge")
    let edgeA = inbox.addEdge(qos: EdgeQoS(), counters: countersA)
    let edgeB = inbox.addEdge(qos: EdgeQoS(delivery: .latest, bufferFrames: 100), counters: countersB)
    #expect(
      sendAll(edgeA, (0..<10).map { dataFrame($0) }, inbox: inbox) == Array(repeating: .queued, count: 10))
    #expect(
      sendAll(edgeB, (100..<110).map { dataFrame($0) }, inbox: inbox) == Array(repeating: .queued, count: 10))

    edgeA.close()
    var frames: [Frame] = []
    // Edge b is still open: frames come, and the input is not over.
    while let batch = inbox.receive(timeoutNanos: 20_000_000), !batch.isEmpty { frames += batch }
    #expect(inbox.receive(timeoutNanos: 20_000_000)?.count == 0, "b is open: the input is not over")
    let indices = dataIndices(frames)
    #expect(indices.filter { $0 < 100 } == Array(0..<10))
    #expect(indices.filter { $0 >= 100 } == Array(100..<110))

    #expect(sendWithin(5, edgeB, dataFrame(110), inbox: inbox) == .queued)
    edgeB.close()
    let rest = receiveWithin(inbox)
    #expect(rest?.more == true, "b's last frame is still queued")
    #expect(rest.map { dataIndices($0.frames) } == [110])
    let end = receiveWithin(inbox)
    #expect(end?.more == false, "both edges are closed and drained")
    #expect(end?.frames.isEmpty == true)
    #expect(countersA.delivered.load(ordering: .relaxed) == 10)
    #expect(countersB.delivered.load(ordering: .relaxed) == 11)
  }

  @Test("a consumer waiting on one open edge is woken by a frame on another")
  func waitingConsumerWokenByAnyEdge() {
    let inbox = Inbox()
    _ = inbox.addEdge(qos: EdgeQoS(), counters: EdgeCounters(from: "a", to: "merge"))  // open, silent
    let edgeB = inbox.addEdge(qos: EdgeQoS(), counters: EdgeCounters(from: "b", to: "merge"))
    let received = Box<[Frame]?>(nil)
    let consumer = Worker {
      var frames: [Frame] = []
      if inbox.receive(into: &frames) { received.set(frames) } else { received.set([]) }
    }
    Thread.sleep(forTimeInterval: 0.05)
    #expect(received.get() == nil)
    #expect(sendWithin(5, edgeB, dataFrame(42), inbox: inbox) == .queued)
    let joined = consumer.join(seconds: 5)
    #expect(joined)
    if !joined { inbox.abort() }
    #expect(received.get().map(dataIndices) == [42])
  }

  @Test("receive(into:max:) takes at most max frames and serves the edges in turn")
  func receiveBatchesServeEdgesInTurn() {
    let inbox = Inbox()
    let edgeA = inbox.addEdge(qos: EdgeQoS(), counters: EdgeCounters(from: "a", to: "merge"))
    let edgeB = inbox.addEdge(qos: EdgeQoS(), counters: EdgeCounters(from: "b", to: "merge"))
    _ = sendAll(edgeA, (0..<100).map { dataFrame($0) }, inbox: inbox)
    _ = sendAll(edgeB, (100..<200).map { dataFrame($0) }, inbox: inbox)
    let first = receiveWithin(inbox, max: 8)
    let second = receiveWithin(inbox, max: 8)
    #expect(first?.more == true)
    #expect(second?.more == true)
    #expect(first?.frames.count == 8)
    #expect(second?.frames.count == 8)
    let indices = dataIndices((first?.frames ?? []) + (second?.frames ?? []))
    #expect(indices.contains { $0 < 100 } && indices.contains { $0 >= 100 }, "\(indices)")
  }

  @Test("receive(timeoutNanos:max:) serves the edges in turn too")
  func timedReceiveServesEdgesInTurn() {
    let inbox = Inbox()
    let edgeA = inbox.addEdge(qos: EdgeQoS(), counters: EdgeCounters(from: "a", to: "merge"))
    let edgeB = inbox.addEdge(qos: EdgeQoS(), counters: EdgeCounters(from: "b", to: "merge"))
    _ = sendAll(edgeA, (0..<100).map { dataFrame($0) }, inbox: inbox)
    _ = sendAll(edgeB, (100..<200).map { dataFrame($0) }, inbox: inbox)
    let first = inbox.receive(timeoutNanos: 1_000_000, max: 8) ?? []
    let second = inbox.receive(timeoutNanos: 1_000_000, max: 8) ?? []
    #expect(first.count == 8)
    #expect(second.count == 8)
    let indices = dataIndices(first + second)
    #expect(indices.contains { $0 < 100 } && indices.contains { $0 >= 100 }, "\(indices)")
  }

  @Test("a receive batch stops at maxBytes: small frames move in batches, large ones one at a time")
  func receiveBatchesStopAtMaxBytes() {
    let inbox = Inbox()
    let small = inbox.addEdge(qos: EdgeQoS(), counters: EdgeCounters(from: "small", to: "consumer"))
    #expect(sendAll(small, (0..<20).map { dataFrame($0, bytes: 300) }, inbox: inbox).count == 20)
    let batch = receiveWithin(inbox, max: 64, maxBytes: 1000)?.frames ?? []
    #expect(batch.count > 1, "small frames still move in batches")
    // No frame is taken once the batch has reached the bound.
    #expect(batch.dropLast().reduce(0) { $0 + $1.byteCount } < 1000, "\(batch.count) frames")
    #expect(dataIndices(batch) == Array(0..<batch.count))

    let timed = inbox.receive(timeoutNanos: 1_000_000_000, max: 64, maxBytes: 1000) ?? []
    #expect(timed.count > 1)
    #expect(timed.dropLast().reduce(0) { $0 + $1.byteCount } < 1000, "\(timed.count) frames")

    let (bigInbox, big, _) = Self.edge(EdgeQoS())
    #expect(sendAll(big, (0..<3).map { dataFrame($0, bytes: 5000) }, inbox: bigInbox).count == 3)
    big.close()
    var batches: [[Int]] = []
    while let next = receiveWithin(bigInbox, max: 64, maxBytes: 1000), next.more {
      batches.append(dataIndices(next.frames))
      if batches.count > 3 { break }
    }
    #expect(batches == [[0], [1], [2]], "a frame larger than maxBytes moves on its own")
  }

  // MARK: - Both sides at once (lock-free edges)

  /// Runs `count` data frames (a series around them) from a producer thread
  /// through `edge` to this thread, taking batches of at most `max`, while both
  /// run at once; returns the data indices in the order received and whether
  /// the input ended after the series end.
  static func stream(
    _ count: Int, through edge: EdgeQueue, of inbox: Inbox, max: Int = 64
  ) -> (indices: [Int], results: [SendResult], ended: Bool) {
    let results = Box<[SendResult]>([])
    let producer = Worker {
      var sent: [SendResult] = [edge.send(.seriesStart(1))]
      sent.reserveCapacity(count + 2)
      for index in 0..<count { sent.append(edge.send(dataFrame(index))) }
      sent.append(edge.send(.seriesEnd(1, frames: count)))
      edge.close()
      results.set(sent)
    }
    let taken = within(60, aborting: [inbox]) { () -> ([Int], Bool) in
      var indices: [Int] = []
      var sawEnd = false
      var frames: [Frame] = []
      while inbox.receive(into: &frames, max: max) {
        for frame in frames {
          if frame.kind == .seriesEnd { sawEnd = true }
          if let index = stampedIndex(frame) { indices.append(index) }
        }
        frames.removeAll(keepingCapacity: true)
      }
      return (indices, sawEnd)
    }
    #expect(producer.join(seconds: 60))
    return (taken?.0 ?? [], results.get(), taken?.1 ?? false)
  }

  @Test(
    "guaranteed, both sides at once: every frame arrives once and in order, across many chunks",
    arguments: [1, 4, 1024])
  func guaranteedConcurrentStream(bufferFrames: Int) {
    let (inbox, edge, counters) = Self.edge(EdgeQoS(delivery: .guaranteed, bufferFrames: bufferFrames))
    let count = 50_000  // about 390 chunks of 128 slots
    let (indices, results, ended) = Self.stream(count, through: edge, of: inbox, max: 7)
    #expect(ended)
    #expect(indices == Array(0..<count))
    #expect(results.allSatisfy { $0 == .queued })
    #expect(counters.deliveredData.load(ordering: .relaxed) == count)
    #expect(counters.queuedFrames == 0)
    #expect(counters.totalDroppedForTest == 0)
  }

  @Test("best-effort, both sides at once: offered = delivered + dropped, and what arrives is in order")
  func bestEffortConcurrentStream() {
    let (inbox, edge, counters) = Self.edge(EdgeQoS(delivery: .bestEffort, bufferFrames: 8))
    let count = 50_000
    let (indices, results, ended) = Self.stream(count, through: edge, of: inbox, max: 3)
    #expect(ended, "the series end is never dropped")
    #expect(indices == indices.sorted() && Set(indices).count == indices.count)
    let dropped = results.filter { $0 == .dropped(.full) }.count
    #expect(indices.count + dropped == count)
    #expect(counters.dropped(.full) == dropped)
    #expect(counters.deliveredData.load(ordering: .relaxed) == indices.count)
    #expect(counters.offered.load(ordering: .relaxed) == count)
  }

  @Test("best-effort: control frames beyond a chunk's slots are kept while the data buffer is full")
  func controlFramesBeyondOneChunk() {
    let (inbox, edge, counters) = Self.edge(EdgeQoS(delivery: .bestEffort, bufferFrames: 2))
    // Two data frames fill the buffer; 1000 one-frame series follow (each a
    // start, a dropped data frame and an end): 2000 control frames, far more
    // than one chunk holds, all queued without waiting.
    var frames = [Frame.seriesStart(0), dataFrame(0), dataFrame(1), .seriesEnd(0, frames: 2)]
    for series in 1...1000 {
      frames += [.seriesStart(series), dataFrame(series + 1, series: series), .seriesEnd(series, frames: 1)]
    }
    let results = sendAll(edge, frames, inbox: inbox)
    #expect(results.filter { $0 == .dropped(.full) }.count == 1000)
    #expect(counters.queuedFrames == 2004)
    edge.close()
    var received: [Frame] = []
    while let next = receiveWithin(inbox, max: 100), next.more { received += next.frames }
    #expect(received.count == 2004)
    #expect(dataIndices(received) == [0, 1])
    #expect(received.filter { $0.kind == .seriesStart }.map(\.meta.series) == Array(0...1000))
  }

  @Test("a consumer that sleeps between bursts is woken for each, without losing a frame")
  func sleepingConsumerWokenPerBurst() {
    let (inbox, edge, _) = Self.edge(EdgeQoS(delivery: .guaranteed, bufferFrames: 16))
    let received = Box<[Int]>([])
    let consumer = Worker {
      var all: [Int] = []
      var frames: [Frame] = []
      while inbox.receive(into: &frames) {
        all += dataIndices(frames)
        frames.removeAll()
      }
      received.set(all)
    }
    // Pauses long enough that the consumer has stopped napping and sleeps.
    for burst in 0..<5 {
      Thread.sleep(forTimeInterval: 0.02)
      let sent = sendAll(edge, (0..<10).map { dataFrame(burst * 10 + $0) }, inbox: inbox)
      #expect(sent == Array(repeating: .queued, count: 10))
    }
    edge.close()
    let joined = consumer.join(seconds: 5)
    #expect(joined)
    if !joined { inbox.abort() }
    #expect(received.get() == Array(0..<50))
  }
}

extension EdgeCounters {
  /// Every drop, whatever its reason.
  var totalDroppedForTest: Int { DropReason.allCases.reduce(0) { $0 + dropped($1) } }
}
