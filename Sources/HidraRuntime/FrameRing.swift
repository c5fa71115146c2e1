/// A first-in first-out queue of frames that moves them in and out.
///
/// Every frame crosses two of these per edge (the edge's queue, then the
/// consumer's batch), so what a push and a pop cost is paid per frame per hop.
/// swift-collections' `Deque` copies an appended element inside its storage
/// closure: a retain of every reference in the frame (name, parts, metadata
/// dictionaries) and a release later, on objects the other core touched last.
/// Here a frame is moved into place and moved out again, its references never
/// counted.
struct FrameRing: ~Copyable {
  private var storage: UnsafeMutablePointer<Frame>
  /// A power of two.
  private var capacity: Int
  private var head = 0
  private(set) var count = 0

  init(capacity: Int = 16) {
    var size = 1
    while size < capacity { size <<= 1 }
    self.capacity = size
    storage = .allocate(capacity: size)
  }

  deinit {
    for offset in 0..<count { (storage + slot(offset)).deinitialize(count: 1) }
    storage.deallocate()
  }

  var isEmpty: Bool { count == 0 }

  @inline(__always) private func slot(_ offset: Int) -> Int { (head &+ offset) & (capacity &- 1) }

  mutating func append(_ frame: consuming Frame) {
    if count == capacity { grow() }
    (storage + slot(count)).initialize(to: frame)
    count += 1
  }

  mutating func popFirst() -> Frame? {
    guard count > 0 else { return nil }
    let frame = (storage + head).move()
    head = (head &+ 1) & (capacity &- 1)
    count -= 1
    return frame
  }

  /// Removes the frame `offset` places from the front; the ones behind it move up.
  mutating func remove(at offset: Int) -> Frame {
    precondition(offset >= 0 && offset < count, "FrameRing offset out of range")
    let frame = (storage + slot(offset)).move()
    for index in offset..<(count - 1) {
      (storage + slot(index)).moveInitialize(from: storage + slot(index + 1), count: 1)
    }
    count -= 1
    return frame
  }

  // The frames are looked at through pointers: a closure taking a `borrowing
  // Frame` read from this storage got a copy of each frame (a retain of every
  // reference it holds, and a release after), four times per frame per batch.

  /// The offset of the first frame that satisfies `predicate`.
  func firstIndex(where predicate: (UnsafePointer<Frame>) -> Bool) -> Int? {
    for offset in 0..<count where predicate(storage + slot(offset)) { return offset }
    return nil
  }

  /// Whether some frame satisfies `predicate`.
  func contains(where predicate: (UnsafePointer<Frame>) -> Bool) -> Bool {
    firstIndex(where: predicate) != nil
  }

  /// How many frames satisfy `predicate`.
  func count(where predicate: (UnsafePointer<Frame>) -> Bool) -> Int {
    var found = 0
    for offset in 0..<count where predicate(storage + slot(offset)) { found += 1 }
    return found
  }

  /// Calls `body` on each frame in order.
  func forEach(_ body: (UnsafePointer<Frame>) -> Void) {
    for offset in 0..<count { body(storage + slot(offset)) }
  }

  /// What a batch holds, counted in one pass.
  struct Tally: Equatable {
    var dataFrames = 0
    /// Payload bytes of all frames.
    var bytes = 0
    /// Whether some frame is a control frame, and whether some carries a receipt.
    var hasControl = false
    var hasReceipt = false

    @inline(__always) mutating func add(_ frame: UnsafePointer<Frame>) {
      if frame.pointee.kind == .data { dataFrames += 1 } else { hasControl = true }
      bytes += frame.pointee.byteCount
      if frame.pointee.receipt != nil { hasReceipt = true }
    }
  }

  func tally() -> Tally {
    var tally = Tally()
    forEach { tally.add($0) }
    return tally
  }

  /// Calls `body` on each frame in order, in place; a frame for which it
  /// returns false is dropped, and the ones behind it move up. Returns what the
  /// ring holds then (counted as each frame is kept, while it is at hand).
  @discardableResult
  mutating func update(_ body: (inout Frame) -> Bool) -> Tally {
    var kept = 0
    var tally = Tally()
    for offset in 0..<count {
      let frame = storage + slot(offset)
      if body(&frame.pointee) {
        tally.add(frame)
        if kept != offset { (storage + slot(kept)).moveInitialize(from: frame, count: 1) }
        kept += 1
      } else {
        frame.deinitialize(count: 1)
      }
    }
    count = kept
    return tally
  }

  /// Moves every frame out, in order, as at most two runs of frames lying next
  /// to each other: `body` must move (or deinitialize) each run it is given.
  /// The ring is then empty.
  mutating func moveAll(_ body: (UnsafeMutablePointer<Frame>, Int) -> Void) {
    let front = min(count, capacity - head)
    if front > 0 { body(storage + head, front) }
    if front < count { body(storage, count - front) }
    count = 0
    head = 0
  }

  mutating func removeAll() {
    while popFirst() != nil {}
    head = 0
  }

  private mutating func grow() {
    let larger = UnsafeMutablePointer<Frame>.allocate(capacity: capacity * 2)
    let front = min(count, capacity - head)
    larger.moveInitialize(from: storage + head, count: front)
    if front < count { (larger + front).moveInitialize(from: storage, count: count - front) }
    storage.deallocate()
    storage = larger
    capacity *= 2
    head = 0
  }
}
