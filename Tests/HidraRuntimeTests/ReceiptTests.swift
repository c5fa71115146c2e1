import HidraGraph
import HidraRuntime
import Synchronization
import Testing

/// Confirmation of tracked frames (`Ledger`, `Frame.confirm`) through edges.
@Suite struct ReceiptTests {
  /// Collects a ledger's outcome.
  final class Outcome: Sendable {
    let value = Mutex<[Bool]>([])
    var results: [Bool] { value.withLock { $0 } }
    func ledger() -> Ledger { Ledger { confirmed in self.value.withLock { $0.append(confirmed) } } }
  }

  /// An output with one edge per delivery mode given, and their inboxes.
  static func output(_ deliveries: [Delivery]) -> (Output, [Inbox]) {
    var edges: [EdgeQueue] = []
    var inboxes: [Inbox] = []
    for (index, delivery) in deliveries.enumerated() {
      let inbox = Inbox()
      edges.append(
        inbox.addEdge(
          qos: EdgeQoS(delivery: delivery, bufferFrames: 8),
          counters: EdgeCounters(from: "s", to: "c\(index)")))
      inboxes.append(inbox)
    }
    return (Output(edges: edges), inboxes)
  }

  static func take(_ inbox: Inbox) -> [Frame] {
    var frames: [Frame] = []
    _ = inbox.receive(timeoutNanos: 0).map { frames = $0 }
    return frames
  }

  @Test func completesOnlyWhenEveryGuaranteedCopyIsConfirmed() {
    let outcome = Outcome()
    let (output, inboxes) = Self.output([.guaranteed, .guaranteed, .latest])
    do {
      var frame = dataFrame(1)
      frame.track(outcome.ledger())
      output.send(frame)
    }
    #expect(outcome.results.isEmpty, "nothing is confirmed yet")
    let first = Self.take(inboxes[0])
    let second = Self.take(inboxes[1])
    let lossy = Self.take(inboxes[2])
    #expect(first.count == 1 && second.count == 1 && lossy.count == 1)
    #expect(lossy[0].isTracked == false, "a latest edge carries no obligation")
    first[0].confirm()
    #expect(outcome.results.isEmpty, "one guaranteed sink is still to confirm")
    second[0].confirm()
    #expect(outcome.results == [true])
  }

  @Test func aCopyDroppedUnconfirmedFailsTheLedger() {
    let outcome = Outcome()
    let (output, inboxes) = Self.output([.guaranteed, .guaranteed])
    do {
      var frame = dataFrame(1)
      frame.track(outcome.ledger())
      output.send(frame)
    }
    do {
      let first = Self.take(inboxes[0])
      first[0].confirm()
      _ = Self.take(inboxes[1])  // taken and dropped without a confirmation
    }
    #expect(outcome.results == [false])
  }

  @Test func anAbortedEdgeNeverConfirmsWhatItHeld() {
    let outcome = Outcome()
    do {
      let (output, inboxes) = Self.output([.guaranteed])
      var frame = dataFrame(1)
      frame.track(outcome.ledger())
      output.send(frame)
      inboxes[0].abort()
      // Aborted frames stay queued (the summary shows them as left) ...
      #expect(outcome.results.isEmpty)
    }
    // ... and fail once the queue is gone.
    #expect(outcome.results == [false])
  }

  @Test func passingOnHandsTheObligationDownstream() {
    let outcome = Outcome()
    let (first, firstInboxes) = Self.output([.guaranteed])
    let (second, secondInboxes) = Self.output([.guaranteed])
    do {
      var frame = dataFrame(1)
      frame.track(outcome.ledger())
      first.send(frame)
    }
    do {
      // A middle node: takes the frame, changes it, passes it on.
      var middle = Self.take(firstInboxes[0])[0]
      middle.meta.attributes["seen"] = "yes"
      second.send(middle)
    }
    #expect(outcome.results.isEmpty)
    let last = Self.take(secondInboxes[0])
    #expect(last[0].meta.attributes["seen"] == "yes")
    last[0].confirm()
    #expect(outcome.results == [true])
  }

  @Test func withoutGuaranteedEdgesTheFrameIsDoneOnceSent() {
    let outcome = Outcome()
    let (output, inboxes) = Self.output([.bestEffort, .latest])
    do {
      var frame = dataFrame(1)
      frame.track(outcome.ledger())
      output.send(frame)
    }
    withExtendedLifetime(inboxes) {}
    #expect(outcome.results == [true], "no guaranteed sink downstream: nothing to wait for")
  }

  @Test func confirmingTwiceOrLateCountsOnce() {
    let outcome = Outcome()
    let (output, inboxes) = Self.output([.guaranteed])
    do {
      var frame = dataFrame(1)
      frame.track(outcome.ledger())
      output.send(frame)
    }
    var kept = Self.take(inboxes[0])
    kept[0].confirm()
    kept[0].confirm()
    #expect(outcome.results == [true])
    kept.removeAll()
    #expect(outcome.results == [true], "dropping a confirmed copy changes nothing")
  }
}
