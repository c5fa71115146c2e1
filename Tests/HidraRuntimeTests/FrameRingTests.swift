import Testing

@testable import HidraRuntime

/// `FrameRing`, the queue under every edge: order, growth while wrapped around,
/// removal from the middle, and that it gives back what it holds.
@Suite struct FrameRingTests {
  /// A ring of 8 slots whose front is at slot `front`, holding data frames
  /// 0..<`frames`; each for which `counted` is true carries a payload that
  /// counts on `released` when it is freed.
  static func wrappedRing(front: Int, frames: Int, released: Counter, counted: (Int) -> Bool) -> FrameRing {
    var ring = FrameRing(capacity: 8)
    for index in 0..<front { ring.append(dataFrame(index)) }
    for _ in 0..<front { _ = ring.popFirst() }
    for index in 0..<frames {
      var frame = dataFrame(index)
      if counted(index) {
        frame.parts = [
          Payload(adopting: UnsafeRawBufferPointer(start: nil, count: 0)) { released.increment() }
        ]
      }
      ring.append(frame)
    }
    return ring
  }

  @Test func keepsOrderThroughWrapAroundAndGrowth() {
    var ring = FrameRing(capacity: 4)
    var expected: [Int] = []
    var next = 0
    // Push 3, pop 2, repeatedly: the front walks around the storage, and the
    // ring grows (from 4 slots) while its contents wrap past the end.
    for _ in 0..<20 {
      for _ in 0..<3 {
        ring.append(dataFrame(next))
        expected.append(next)
        next += 1
      }
      for _ in 0..<2 {
        #expect(ring.popFirst().flatMap(stampedIndex) == expected.removeFirst())
      }
    }
    #expect(ring.count == expected.count)
    var rest: [Int] = []
    while let frame = ring.popFirst() { rest.append(stampedIndex(frame) ?? -1) }
    #expect(rest == expected)
    #expect(ring.isEmpty && ring.popFirst().flatMap(stampedIndex) == nil)
  }

  @Test func removesFromTheMiddleAndCounts() {
    var ring = FrameRing(capacity: 4)
    ring.append(.seriesStart(1))
    for index in 0..<5 { ring.append(dataFrame(index)) }
    ring.append(.seriesEnd(1, frames: 5))
    let dataCount = ring.count(where: { $0.pointee.kind == .data })
    let firstData = ring.firstIndex(where: { $0.pointee.kind == .data })
    let hasEnd = ring.contains(where: { $0.pointee.kind == .seriesEnd })
    let hasSeries2 = ring.contains(where: { $0.pointee.meta.series == 2 })
    let tally = ring.tally()
    #expect(dataCount == 5)
    #expect(firstData == 1)
    #expect(hasEnd && !hasSeries2)
    #expect(tally == FrameRing.Tally(dataFrames: 5, bytes: 5 * 16, hasControl: true, hasReceipt: false))
    #expect(stampedIndex(ring.remove(at: 3)) == 2)
    #expect(stampedIndex(ring.remove(at: 1)) == 0)
    var left: [String] = []
    while let frame = ring.popFirst() { left.append(describe([frame])[0]) }
    #expect(left == ["start1", "1", "3", "4", "end1"])
  }

  @Test func updatesInPlaceDroppingWhatTheBodyRejects() {
    let released = Counter()
    // Wrapped around: the front is at slot 5 of 8 when the update runs.
    var ring = Self.wrappedRing(front: 5, frames: 7, released: released) { $0 % 2 == 1 }
    var seen: [Int] = []
    let tally = ring.update { frame in
      seen.append(frame.meta.frame)
      guard frame.meta.frame % 2 == 0 else { return false }
      frame.meta.name = "kept_\(frame.meta.frame)"
      return true
    }
    let kept = ring.count
    #expect(seen == Array(0..<7), "every frame, in order")
    #expect(released.value == 3, "the three rejected frames are let go, once each")
    #expect(kept == 4)
    #expect(tally == FrameRing.Tally(dataFrames: 4, bytes: 4 * 16), "what is kept, counted")
    var names: [String] = []
    while let frame = ring.popFirst() { names.append(frame.meta.name) }
    #expect(names == ["kept_0", "kept_2", "kept_4", "kept_6"], "changed in place, order kept")
  }

  @Test func movesEverythingOutInOrderWhileWrappedAround() {
    let released = Counter()
    // The front at slot 6 of 8: the seven frames lie in two runs, 2 then 5.
    var ring = Self.wrappedRing(front: 6, frames: 7, released: released) { _ in true }
    let target = UnsafeMutablePointer<Frame>.allocate(capacity: 7)
    defer { target.deallocate() }
    var runs: [Int] = []
    var moved = 0
    ring.moveAll { frames, count in
      runs.append(count)
      (target + moved).moveInitialize(from: frames, count: count)
      moved += count
    }
    let left = ring.count
    #expect(runs == [2, 5])
    #expect(left == 0 && ring.popFirst() == nil)
    #expect(released.value == 0, "moved, not let go")
    #expect((0..<7).map { target[$0].meta.frame } == Array(0..<7))
    target.deinitialize(count: 7)
    #expect(released.value == 7)
    ring.append(dataFrame(42))
    #expect(ring.popFirst().flatMap(stampedIndex) == 42, "usable again")
  }

  @Test func releasesWhatItHoldsWhenDropped() {
    let released = Counter()
    do {
      var ring = FrameRing(capacity: 2)
      for _ in 0..<5 {
        let payload = Payload(adopting: UnsafeRawBufferPointer(start: nil, count: 0)) { released.increment() }
        ring.append(Frame(kind: .data, meta: FrameMeta(), parts: [payload]))
      }
      _ = ring.popFirst()
    }
    #expect(released.value == 5, "every payload freed once: one popped, four left in the ring")
  }
}
