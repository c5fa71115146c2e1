import Synchronization

/// Tracks one item a source sent (a file, a download) until every guaranteed
/// sink downstream has confirmed it, so the source may then clean up (delete the
/// file, delete it on the detector, tell a client it is stored).
///
/// How it works: a source makes a `Ledger` and attaches it to the data frame
/// (`Frame.track`). Each copy of the frame that enters a *guaranteed* edge gets
/// its own `Receipt`; copies on best-effort and latest edges carry none (losing
/// them is their promise, so they neither confirm nor fail anything). A receipt
/// settles once:
/// - confirmed, when a sink calls `Frame.confirm()` (the store once the file
///   is durable, a forward once the consumer acknowledged), or when a node
///   passes the frame on (`Output.send` hands the obligation to new receipts on
///   its own guaranteed edges, or ends it when it has none);
/// - failed, when its last copy is gone unconfirmed: the frame was dropped by a
///   node that gave up, abandoned by an abort, or lost when a stage failed.
///
/// The ledger calls its completion exactly once, after its last receipt
/// settled: `true` when every one was confirmed, `false` when any failed. Safe
/// by construction: forgetting to confirm keeps the source's file; only an
/// explicit confirmation or hand-over counts as success.
public final class Ledger: Sendable {
  private let pending = Atomic<Int>(0)
  private let failed = Atomic<Bool>(false)
  private let completion: @Sendable (Bool) -> Void

  /// `completion` runs once, on whichever thread settles the last receipt
  /// (possibly while a queue's lock is held): keep it short and non-blocking,
  /// e.g. push the result onto the source's own queue.
  public init(_ completion: @escaping @Sendable (_ confirmed: Bool) -> Void) {
    self.completion = completion
  }

  fileprivate func open() { pending.add(1, ordering: .acquiringAndReleasing) }

  fileprivate func settle(confirmed: Bool) {
    if !confirmed { failed.store(true, ordering: .releasing) }
    if pending.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
      completion(!failed.load(ordering: .acquiring))
    }
  }
}

/// One copy's obligation towards a `Ledger` (see there). Nodes do not make
/// receipts; they call `Frame.confirm()` or pass frames on. A receipt settles
/// once: when confirmed, or, unconfirmed, when its last copy is gone.
public final class Receipt: Sendable {
  let ledger: Ledger
  private let settled = Atomic<Bool>(false)

  init(_ ledger: Ledger) {
    self.ledger = ledger
    ledger.open()
  }

  func confirm() {
    if !settled.exchange(true, ordering: .acquiringAndReleasing) { ledger.settle(confirmed: true) }
  }

  deinit {
    if !settled.load(ordering: .acquiring) { ledger.settle(confirmed: false) }
  }
}

extension Frame {
  /// Attaches `ledger` to this frame before a source emits it: the ledger
  /// completes once every guaranteed sink downstream has confirmed the frame.
  public mutating func track(_ ledger: Ledger) { receipt = Receipt(ledger) }

  /// A sink says it is done with this frame for good: stored durably,
  /// acknowledged by its consumer, or deliberately not wanted (a filter).
  /// Does nothing for frames without a receipt.
  public func confirm() { receipt?.confirm() }

  /// Whether a source asked to hear when this frame is confirmed.
  public var isTracked: Bool { receipt != nil }

  /// This copy for one edge: guaranteed edges get a new obligation, others none.
  func copy(forGuaranteedEdge guaranteed: Bool) -> Frame {
    guard let receipt else { return self }
    var copy = self
    copy.receipt = guaranteed ? Receipt(receipt.ledger) : nil
    return copy
  }
}
