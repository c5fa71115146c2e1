import Synchronization

/// Items whose frames were settled (see `Ledger`), handed from whichever thread
/// settled them to the source's own thread, which acts on them (deletes a file,
/// acknowledges a message).
final class SettledQueue<Item: Sendable>: Sendable {
  private let items = Mutex<[(item: Item, confirmed: Bool)]>([])

  /// Called from a ledger's completion: quick, never blocks for long.
  func add(_ item: Item, confirmed: Bool) { items.withLock { $0.append((item, confirmed)) } }

  /// Everything settled since the last call.
  func take() -> [(item: Item, confirmed: Bool)] {
    items.withLock { list in
      defer { list.removeAll(keepingCapacity: true) }
      return list
    }
  }
}
