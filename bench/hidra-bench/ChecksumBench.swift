// `checksum`: the checksum node's throughput against XXH3 called directly on the
// same buffers.
//
// The node is fed premade frames (`premade -> checksum -> count`): the source
// resends the same few payloads without filling them, so the run costs hashing
// plus whatever the runtime adds per frame. The baseline hashes the same payloads,
// the same number of times, in one thread, through the same dispatch entry point
// the node uses (hidra_xxh3_64). A second baseline is libxxhash's generic
// XXH3_64bits (what Debian's library gives without the x86 dispatch build).

import CXXHash
import Foundation
import HidraGraph
import HidraRuntime

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

func benchChecksum() {
  let sizes = [64 << 10, 1 << 20, 4 << 20]
  let rounds = BenchOptions.rounds(default: 3)
  let volume = BenchOptions.quick ? 2 << 30 : 16 << 30
  // Eight distinct payloads: 512 KiB at 64 KiB (in L2), 8 MiB at 1 MiB and
  // 32 MiB at 4 MiB (L3-sized on the reference machine). Both sides hash the same.
  let distinct = 8
  print(
    "checksum: xxh3 in the checksum node (premade -> checksum -> count) vs XXH3 called directly "
      + "(best of \(rounds))")
  var rows = [
    [
      "size", "frames", "direct GB/s", "node GB/s", "node/direct", "target", "met", "generic GB/s",
      "generic/direct",
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
    var generic: [Double] = []
    for _ in 0..<rounds {
      direct.append(
        bytes / hashLoop(payloads, count: frames) { hidra_xxh3_64($0.baseAddress, $0.count) } / 1e9)
      let run = runGraph(yaml, premade: payloads)
      precondition(run.received["sink"]?.frames == frames, "the checksum graph lost frames")
      node.append(bytes / run.seconds / 1e9)
      // The generic build is slow; a quarter of the volume is plenty.
      let genericFrames = max(frames / 4, distinct)
      let genericBytes = Double(genericFrames * size)
      generic.append(
        genericBytes / hashLoop(payloads, count: genericFrames) { XXH3_64bits($0.baseAddress, $0.count) }
          / 1e9)
    }
    let directGB = best(direct)
    let nodeGB = best(node)
    let genericGB = best(generic)
    rows.append([
      sizeName(size), String(frames), fixed(directGB, 1), fixed(nodeGB, 1), fixed(nodeGB / directGB),
      ">= 0.9",
      nodeGB / directGB >= 0.9 ? "yes" : "NO", fixed(genericGB, 1), fixed(genericGB / directGB),
    ])
  }
  printTable(rows)
  print("  direct = hidra_xxh3_64 (libxxhash's x86 dispatch build, AVX2/AVX-512 picked at run time)")
  print("  generic = XXH3_64bits from the same library (its portable build): why the dispatch build matters")
}
