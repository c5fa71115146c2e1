import HidraGraph
import HidraRuntime
import Testing

/// Every data frame offered to an edge is delivered, dropped for a named reason,
/// or still queued: the final summary's columns must add up.
@Suite("Accounting") struct AccountingTests {
  @Test(
    "offered = delivered data + dropped + queued",
    arguments: [
      EdgeQoS(delivery: .latest, bufferFrames: 4),
      EdgeQoS(delivery: .bestEffort, bufferFrames: 4, sampleEvery: 3),
      EdgeQoS(delivery: .latest, bufferFrames: 8, bufferBytes: 100, sampleEvery: 2),
    ])
  func everyOfferedFrameIsAccountedFor(qos: EdgeQoS) {
    let inbox = Inbox()
    let counters = EdgeCounters(from: "p", to: "c")
    let edge = inbox.addEdge(qos: qos, counters: counters)
    var taken: [Frame] = []
    var received = 0
    var receivedControl = 0
    for round in 0..<5 {
      _ = sendAll(edge, [.seriesStart(round)] + (0..<300).map { dataFrame($0, bytes: 30) }, inbox: inbox)
      // Read part of what is queued, leaving the rest.
      taken.removeAll()
      if inbox.receive(into: &taken, max: 3) {
        received += taken.count { $0.kind == .data }
        receivedControl += taken.count { $0.kind != .data }
      }
    }
    let snapshot = counters.snapshot()
    #expect(snapshot.offered == 1500)
    #expect(snapshot.deliveredData == received)
    // Control frames are never dropped: those not received are still queued.
    let queuedData = snapshot.queuedFrames - (5 - receivedControl)
    #expect(snapshot.offered == snapshot.deliveredData + snapshot.totalDropped + queuedData)
    #expect(snapshot.totalDropped > 0, "the bounds were reached")
  }
}
