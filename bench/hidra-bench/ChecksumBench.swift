// `checksum`: the checksum stage's throughput against XXH3 called directly on
// payloads of the same sizes.
//
// The node is fed premade frames (`premade -> checksum -> count`): the source
// resends the same few payloads without filling them, so the run costs hashing
// plus whatever the runtime adds per frame. The checksum node runs fused on the
// source's thread, and its baseline is measured in situ, on that thread: for
// each batch the source times making its frames, then emitting them (the
// checksum stage: the fused node hashes each frame and the batch is queued for
// the sink), then hashing as many payloads of a set of its own with XXH3
// directly, through the same dispatch entry point (hidra_xxh3_64)
// (`InSituBaseline`). stage/direct is the direct hashing's time over the
// stage's work (emitting, less any wait for room), per round; the table shows the median of the rounds and their
// range. Measured this way, the machine's drift (a quarter over seconds here)
// falls on both alike: graph/direct from runs taken one after the other (best
// of each) swung between 0.72 and 0.85 for one build within minutes; the
// in-situ medians of one build stay within a few hundredths.
//
// The stage's work is what it does per frame, not what it waits for:
// - Making the frames is the source's work: in graph A of `throughput`
//   (generate -> checksum -> count) the checksum runs on a thread of its own,
//   and a source makes its frames whether or not a checksum follows. Here it
//   costs more than a real source's would: the premade source resends 8 payload
//   objects, so each frame's reference count is taken on a cache line the
//   sink's core released it on.
// - Waiting for room is the sink's delay, not the stage's work: the source's
//   edge is paced (docs/qos.md: it waits at 4 MiB queued, about 100 us of its
//   output at 64 KiB), so whenever the sink's thread is off its core longer
//   than that, the stage waits (`EdgeCounters.blockedNanos` counts it). While
//   other machines' work kept the host busy, that took about a third of the
//   time: stage/direct 0.80-0.88, all in 0.55-0.59, in three runs.
// Both are in the table (`all in`, `source ns/frame`, `waited`): the split
// hides nothing.
//
// The separate runs are still made, for speeds one can compare with other
// machines and for two more baselines: libxxhash's generic XXH3_64bits (what
// Debian's library gives without the x86 dispatch build), and a bound on what
// any two-thread pipeline can reach here: the same hashing on one thread, each
// digest handed to a second thread through the least a hand-over can be (a ring
// of one cache line per slot, one atomic store per frame, a reader that spins
// and yields, as Hidra's edges do), nothing else. No frames, no metadata, no
// counters.

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
  // by a quarter over seconds.
  let rounds = BenchOptions.rounds(default: 9)
  let volume = BenchOptions.quick ? 1 << 30 : 3 << 30
  // Eight distinct payloads per set: 512 KiB at 64 KiB (the size of L2 here),
  // 8 MiB at 1 MiB and 32 MiB at 4 MiB (L3-sized). The node and the in-situ
  // baseline each have a set; the separate runs hash the node's.
  let distinct = BenchOptions.distinct(default: 8)
  print(
    "checksum: xxh3 in the checksum stage (premade -> checksum -> count) vs XXH3 called directly, "
      + "in situ (median of \(rounds) rounds) and in separate runs (best of \(rounds))")
  var rows = [
    [
      "size", "frames", "direct GB/s", "stage GB/s", "stage/direct", "range", "target", "met", "all in",
      "source ns/frame", "waited", "separate", "bound/direct", "offset16/direct", "generic/direct",
    ]
  ]
  for size in BenchOptions.selected(sizes) {
    let frames = frameCount(size: size, volume: volume, minFrames: 1_000, maxFrames: 250_000)
    let payloads = premadePayloads(size: size, count: distinct)
    let baselinePayloads = premadePayloads(size: size, count: distinct)
    // The same hashing 16 bytes into cache-line-aligned buffers: how a buffer
    // aligned to 16 bytes only (all that malloc promises) fares.
    let offsetPayloads = premadePayloads(size: size + 64, count: distinct)
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
    var inSitu: [Double] = []
    var inSituDirect: [Double] = []
    var inSituStage: [Double] = []
    var withSource: [Double] = []
    var sourceNanos: [Double] = []
    var waited: [Double] = []
    var direct: [Double] = []
    var node: [Double] = []
    var bound: [Double] = []
    var generic: [Double] = []
    var offset16: [Double] = []
    for _ in 0..<rounds {
      let baseline = InSituBaseline(payloads: baselinePayloads)
      let situ = runGraph(yaml, premade: payloads, baseline: baseline)
      precondition(situ.received["sink"]?.frames == frames, "the checksum graph lost frames")
      let blocked = Int(situ.blockedSeconds * 1e9)
      let ratios = baseline.ratios(blockedNanos: blocked)
      inSitu.append(ratios.stage)
      withSource.append(ratios.withSource)
      waited.append(ratios.waited)
      inSituDirect.append(bytes / Double(baseline.directNanos.load(ordering: .relaxed)))
      inSituStage.append(bytes / Double(baseline.stageNanos.load(ordering: .relaxed) - blocked))
      sourceNanos.append(Double(baseline.makeNanos.load(ordering: .relaxed)) / Double(frames))

      direct.append(
        bytes / hashLoop(payloads, count: frames) { hidra_xxh3_64($0.baseAddress, $0.count) } / 1e9)
      let run = runGraph(yaml, premade: payloads)
      precondition(run.received["sink"]?.frames == frames, "the checksum graph lost frames")
      node.append(bytes / run.seconds / 1e9)
      bound.append(bytes / handOffLoop(payloads, count: frames) / 1e9)
      offset16.append(
        bytes / hashLoop(offsetPayloads, count: frames) { hidra_xxh3_64($0.baseAddress! + 16, $0.count - 64) }
          / 1e9)
      if BenchOptions.verbose {
        let blocked = run.blockedSeconds / run.seconds
        print(
          "  \(sizeName(size)): in situ stage/direct \(fixed(inSitu.last!, 3)), all in "
            + "\(fixed(withSource.last!, 3)), waited \(fixed(100 * waited.last!, 1))%; separate runs: direct "
            + "\(fixed(direct.last!, 1)), node \(fixed(node.last!, 1)) (waiting for room "
            + "\(fixed(100 * blocked, 0))% of its run), bound \(fixed(bound.last!, 1)) GB/s")
      }
      // The generic build is slow; a quarter of the volume is plenty.
      let genericFrames = max(frames / 4, distinct)
      let genericBytes = Double(genericFrames * size)
      generic.append(
        genericBytes / hashLoop(payloads, count: genericFrames) { XXH3_64bits($0.baseAddress, $0.count) }
          / 1e9)
    }
    let ratio = median(inSitu)
    let directGB = best(direct)
    rows.append([
      sizeName(size), String(frames), fixed(median(inSituDirect), 1), fixed(median(inSituStage), 1),
      fixed(ratio), "\(fixed(inSitu.min()!))-\(fixed(inSitu.max()!))", ">= 0.9", ratio >= 0.9 ? "yes" : "NO",
      fixed(median(withSource)), fixed(median(sourceNanos), 0), "\(fixed(100 * median(waited), 1))%",
      fixed(best(node) / directGB),
      fixed(best(bound) / directGB), fixed(best(offset16) / directGB),
      fixed(best(generic) / directGB),
    ])
  }
  printTable(rows)
  print(
    "  direct = hidra_xxh3_64 (libxxhash's x86 dispatch build, AVX2/AVX-512 picked at run time), in situ: "
      + "between the source's batches, on its thread, over a second set of payloads")
  print(
    "  stage/direct = in situ, the direct hashing's time over the checksum stage's work (emitting: hashing in "
      + "the fused node, queueing for the sink; not waiting for room), the median of the rounds; "
      + "range = the lowest and highest round")
  print(
    "  all in = the same over everything the source's thread did besides: making the frames (source ns/frame, "
      + "the premade source's work), emitting them and waiting for room (waited: its share of that time)")
  print(
    "  separate = graph/direct from separate runs, best of each (drifts with the machine: see bench/README.md)"
  )
  print(
    "  bound = the same hashing, each digest handed to a second thread through a bare ring: "
      + "the most any two-thread pipeline reaches here")
  print(
    "  offset16 = the same hashing 16 bytes into each buffer (malloc aligns to 16 only): "
      + "why payload buffers start on a cache line")
  print("  generic = XXH3_64bits from the same library (its portable build): why the dispatch build matters")
}
