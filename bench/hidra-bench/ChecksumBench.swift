// `checksum`: the checksum node's throughput against XXH3 called directly on the
// same buffers.
//
// The node is fed premade frames (`premade -> checksum -> count`): the source
// resends the same few payloads without filling them, so the run costs hashing
// plus whatever the runtime adds per frame. The baseline hashes the same payloads,
// the same number of times, in one thread, through the same dispatch entry point
// the node uses (hidra_xxh3_64). A second baseline is libxxhash's generic
// XXH3_64bits (what Debian's library gives without the x86 dispatch build).
//
// A third measurement bounds what any two-thread pipeline can reach here: the
// same hashing on one thread, each digest handed to a second thread through the
// least a hand-over can be (a ring of one cache line per slot, one atomic store
// per frame, a reader that spins and yields, as Hidra's edges do), nothing else.
// No frames, no metadata, no counters. `bound/direct` is what the machine allows
// a pipeline in the same minutes (0.91-1.02 in the runs so far), `node/bound`
// how far Hidra is from it.

import CXXHash
import Foundation
import HidraGraph
import HidraRuntime
import Synchronization

/// Hashes `count` payloads, `payloads` in turn, with `hash`; returns seconds.
func hashLoop(_ payloads: [Payload], count: Int, _ hash: (UnsafeRawBufferPointer) -> UInt64) -> Double {
  var sink: UInt64 = 0
  let start = monotonicNanos()
  for index in 0..<count { sink ^= hash(payloads[index % payloads.count].bytes) }
  let seconds = Double(monotonicNanos() - start) / 1e9
  // Keep the digests alive so the loop cannot be optimized away.
  if sink == 0x5eed { print("", terminator: "") }
  return seconds
}

/// The hand-over bound's ring: one cache line per slot, and each side's count
/// on a cache line of its own (as in `EdgeQueue`).
final class HandOffRing: @unchecked Sendable {
  // @unchecked Sendable: a slot is written by the producer before it publishes
  // `written`, and read by the reader only after it has seen that.
  static let slots = 512
  static let line = 64
  let memory = UnsafeMutableRawPointer.allocate(byteCount: slots * line, alignment: line)
  private let padding0: (Int, Int, Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0, 0, 0)
  let written = Atomic<Int>(0)
  private let padding1: (Int, Int, Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0, 0, 0)
  let taken = Atomic<Int>(0)
  private let padding2: (Int, Int, Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0, 0, 0)

  deinit { memory.deallocate() }

  func store(_ digest: UInt64, at index: Int) {
    memory.storeBytes(of: digest, toByteOffset: (index % Self.slots) * Self.line, as: UInt64.self)
  }

  func load(at index: Int) -> UInt64 {
    memory.load(fromByteOffset: (index % Self.slots) * Self.line, as: UInt64.self)
  }
}

/// The hand-over bound: `count` payloads hashed on this thread, each digest
/// handed to a reader thread through a `HandOffRing`; returns seconds (until
/// the reader has taken the last one).
func handOffLoop(_ payloads: [Payload], count: Int) -> Double {
  let ring = HandOffRing()
  let done = DispatchSemaphore(value: 0)
  let start = monotonicNanos()
  let reader = Thread {
    var read = 0
    var sink: UInt64 = 0
    while read < count {
      let available = ring.written.load(ordering: .acquiring)
      if available == read {
        sched_yield()
        continue
      }
      while read < available {
        sink ^= ring.load(at: read)
        read += 1
      }
      ring.taken.store(read, ordering: .releasing)
    }
    if sink == 0x5eed { print("", terminator: "") }
    done.signal()
  }
  reader.start()
  var seenTaken = 0
  for index in 0..<count {
    while index - seenTaken >= HandOffRing.slots {
      seenTaken = ring.taken.load(ordering: .acquiring)
      if index - seenTaken >= HandOffRing.slots { sched_yield() }
    }
    let bytes = payloads[index % payloads.count].bytes
    ring.store(hidra_xxh3_64(bytes.baseAddress, bytes.count), at: index)
    ring.written.store(index + 1, ordering: .sequentiallyConsistent)
  }
  done.wait()
  return Double(monotonicNanos() - start) / 1e9
}

func benchChecksum() {
  let sizes = [64 << 10, 1 << 20, 4 << 20]
  // Many short rounds rather than a few long ones: this machine's speed drifts
  // by a quarter over seconds, and the best of three half-second runs per
  // column left the ratio to which column caught a quiet second.
  let rounds = BenchOptions.rounds(default: 9)
  let volume = BenchOptions.quick ? 2 << 30 : 5 << 30
  // Eight distinct payloads: 512 KiB at 64 KiB (the size of L2 here), 8 MiB at
  // 1 MiB and 32 MiB at 4 MiB (L3-sized). Every column hashes the same.
  let distinct = BenchOptions.distinct(default: 8)
  print(
    "checksum: xxh3 in the checksum node (premade -> checksum -> count) vs XXH3 called directly "
      + "(best of \(rounds))")
  var rows = [
    [
      "size", "frames", "direct GB/s", "node GB/s", "node/direct", "target", "met", "bound GB/s",
      "bound/direct", "node/bound", "generic GB/s", "generic/direct",
    ]
  ]
  for size in BenchOptions.selected(sizes) {
    let frames = frameCount(size: size, volume: volume, minFrames: 1_000, maxFrames: 250_000)
    let payloads = premadePayloads(size: size, count: distinct)
    let bytes = Double(frames * size)
    let yaml = """
      graph: bench-checksum
      nodes:
        src:
          type: premade
          count: \(frames)
        sum:
          type: checksum
          input: src
          algorithms: [xxh3]
        sink:
          type: count
          input: sum
      """
    var direct: [Double] = []
    var node: [Double] = []
    var bound: [Double] = []
    var generic: [Double] = []
    for _ in 0..<rounds {
      direct.append(
        bytes / hashLoop(payloads, count: frames) { hidra_xxh3_64($0.baseAddress, $0.count) } / 1e9)
      let run = runGraph(yaml, premade: payloads)
      precondition(run.received["sink"]?.frames == frames, "the checksum graph lost frames")
      node.append(bytes / run.seconds / 1e9)
      let blocked = run.blockedSeconds / run.seconds
      bound.append(bytes / handOffLoop(payloads, count: frames) / 1e9)
      if BenchOptions.verbose {
        print(
          "  \(sizeName(size)): direct \(fixed(direct.last!, 1)), node \(fixed(node.last!, 1)) "
            + "(waiting for room \(fixed(100 * blocked, 0))% of its run), bound \(fixed(bound.last!, 1)) GB/s"
        )
      }
      // The generic build is slow; a quarter of the volume is plenty.
      let genericFrames = max(frames / 4, distinct)
      let genericBytes = Double(genericFrames * size)
      generic.append(
        genericBytes / hashLoop(payloads, count: genericFrames) { XXH3_64bits($0.baseAddress, $0.count) }
          / 1e9)
    }
    let directGB = best(direct)
    let nodeGB = best(node)
    let boundGB = best(bound)
    let genericGB = best(generic)
    rows.append([
      sizeName(size), String(frames), fixed(directGB, 1), fixed(nodeGB, 1), fixed(nodeGB / directGB),
      ">= 0.9",
      nodeGB / directGB >= 0.9 ? "yes" : "NO", fixed(boundGB, 1), fixed(boundGB / directGB),
      fixed(nodeGB / boundGB), fixed(genericGB, 1), fixed(genericGB / directGB),
    ])
  }
  printTable(rows)
  print("  direct = hidra_xxh3_64 (libxxhash's x86 dispatch build, AVX2/AVX-512 picked at run time)")
  print(
    "  bound = the same hashing, each digest handed to a second thread through a bare ring: "
      + "the most any two-thread pipeline reaches here")
  print("  generic = XXH3_64bits from the same library (its portable build): why the dispatch build matters")
}
