import Foundation
import Testing

@testable import HidraRuntime

@Suite("Small payload buffers")
struct SmallBuffersTests {
  @Test("size classes: powers of two from 1 KiB to 32 KiB; smaller and larger are not pooled")
  func sizeClasses() {
    #expect(SmallBuffers.sizeClass(512) == nil)
    #expect(SmallBuffers.sizeClass(513).map { [$0.index, $0.size] } == [0, 1024])
    #expect(SmallBuffers.sizeClass(1024).map { [$0.index, $0.size] } == [0, 1024])
    #expect(SmallBuffers.sizeClass(1025).map { [$0.index, $0.size] } == [1, 2048])
    #expect(SmallBuffers.sizeClass(4096).map { [$0.index, $0.size] } == [2, 4096])
    #expect(SmallBuffers.sizeClass(4097).map { [$0.index, $0.size] } == [3, 8192])
    #expect(SmallBuffers.sizeClass(32768).map { [$0.index, $0.size] } == [5, 32768])
    #expect(SmallBuffers.sizeClass(32769) == nil, "64 KiB and up: BufferPool's")
  }

  @Test("payload buffers from 1 KiB up start on a cache line, fresh or reused, and hold all their bytes")
  func alignment() {
    for size in [1000, 4096, 5000, 32768, 65536, 100_000, 1 << 20, 5 << 20] {
      let alignment = 64
      // Several at once (fresh buffers), then again after they are given back (reused ones).
      for round in 0..<2 {
        // Every byte written (the last ones too): the slack is past the end, not in it.
        let payloads = (0..<4).map { _ in
          Payload(count: size) { $0.initializeMemory(as: UInt8.self, repeating: 0xA5) }
        }
        for payload in payloads {
          let address = UInt(bitPattern: payload.bytes.baseAddress)
          #expect(address % UInt(alignment) == 0, "\(size) bytes, round \(round): at \(address)")
          #expect(payload.count == size && payload.bytes.last == 0xA5)
        }
      }
    }
  }

  @Test("a thread gets back the buffer it gave last")
  func sameThreadReuse() {
    let (first, capacity) = SmallBuffers.take(3000)!
    #expect(capacity == 4096)
    SmallBuffers.give(first, capacity: capacity)
    let (second, _) = SmallBuffers.take(4000)!
    #expect(second == first)
    SmallBuffers.give(second, capacity: capacity)
  }

  @Test("buffers freed on one thread reach another through the depot, a batch at a time")
  func buffersCrossThreads() {
    let size = 20_000  // the 32 KiB class, which the other tests do not use
    let made = Box<[UInt]>([])
    // A producer thread makes them and ends; a consumer thread frees them all.
    _ = Worker { made.set((0..<128).map { _ in UInt(bitPattern: SmallBuffers.take(size)!.0) }) }.join(
      seconds: 10)
    _ = Worker {
      for address in made.get() {
        SmallBuffers.give(UnsafeMutableRawPointer(bitPattern: address)!, capacity: 32768)
      }
    }.join(seconds: 10)  // its cache goes to the depot when the thread ends
    #expect(SmallBuffers.depotCount(5) >= 96, "three batches of 32 spilled while freeing 128")
    let reused = Box<[UInt]>([])
    _ = Worker {
      reused.set((0..<SmallBuffers.batch).map { _ in UInt(bitPattern: SmallBuffers.take(size)!.0) })
    }
    .join(seconds: 10)
    #expect(Set(reused.get()).isSubset(of: Set(made.get())), "a new thread took a batch the other gave")
    _ = Worker {
      for address in reused.get() {
        SmallBuffers.give(UnsafeMutableRawPointer(bitPattern: address)!, capacity: 32768)
      }
    }.join(seconds: 10)
  }
}
