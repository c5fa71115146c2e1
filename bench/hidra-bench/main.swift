// hidra-bench: Hidra's benchmarks. Every number is printed next to a baseline
// measured in the same run, and the claim is the ratio: the machines are shared and
// noisy, and absolute times drift 2-4x between runs.
//
//   make bench                                # all benchmarks
//   .build/release/hidra-bench NAME...        # some: validate, throughput, checksum, memory, store,
//                                             #   forward, directory, monitor, wire
//   .build/release/hidra-bench --quick        # smaller volumes, one round (or HIDRA_BENCH_QUICK=1)
//
// See bench/README.md for what each one measures and how to read it.

import Foundation
import HidraGraph
import HidraNodes
import HidraRuntime
import Synchronization
import Yams

/// Runs `body` `repetitions` times and returns the fastest wall-clock time in seconds.
func fastest(_ repetitions: Int, _ body: () -> Void) -> Double {
  var best = Double.infinity
  for _ in 0..<repetitions {
    let start = DispatchTime.now().uptimeNanoseconds
    body()
    best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
  }
  return best
}

/// A realistic large graph: `chains` detector chains, each
/// source -> filter -> checksum -> split -> store + forward (+ a latest preview),
/// 7 nodes per chain.
func generatedGraph(nodes: Int) -> String {
  var lines = ["graph: generated", "nodes:"]
  let chains = nodes / 7
  for c in 0..<chains {
    lines += [
      "  det\(c):", "    type: generate", "    shape: [1028, 512]", "    rate: 100/s", "    count: 1000",
      "  f\(c):", "    type: filter", "    input: det\(c)", "    glob: [\"**/*.raw\"]",
      "    size: {min: 1KiB}",
      "  sum\(c):", "    type: checksum", "    input: f\(c)", "    algorithms: [xxh3, sha256]",
      "  sp\(c):", "    type: split", "    input: sum\(c)", "    mode: broadcast",
      "  disk\(c):", "    type: store",
      "    input: {from: sp\(c), delivery: guaranteed, buffer: {frames: 100, bytes: 1GiB}}",
      "    root: /data/d\(c)", "    path: \"{series}/{series}_{frame:06}.raw\"",
      "  fwd\(c):", "    type: forward", "    input: sp\(c)", "    listen: tcp://*:\(10000 + c)",
      "  live\(c):", "    type: forward", "    input: {from: det\(c), delivery: latest, buffer: {frames: 4}}",
      "    pattern: pub", "    listen: tcp://*:\(20000 + c)",
    ]
  }
  return lines.joined(separator: "\n") + "\n"
}

/// One table row: a name, milliseconds, and the ratio to the baseline.
func row(_ name: String, _ seconds: Double, _ baseline: Double) {
  let padded = name.padding(toLength: 34, withPad: " ", startingAt: 0)
  print("  \(padded) " + String(format: "%9.1f ms   %5.2fx baseline", seconds * 1e3, seconds / baseline))
}

func benchValidate() {
  let nodeCount = 2002
  let text = generatedGraph(nodes: nodeCount)
  let validator = GraphValidator(catalog: NodeTypes.catalog)
  let check = validator.validate(text: text, file: "generated.yaml")
  precondition(
    check.isValid && check.graph?.nodes.count == nodeCount, "\(check.diagnostics.sorted.prefix(5))")

  // Baseline: libyaml (through Yams) only composing the same document, with the
  // same resolver the loader uses.
  let parse = fastest(5) { _ = try! Yams.compose(yaml: text, .basic, .default, .utf8) }
  let validate = fastest(5) { _ = validator.validate(text: text, file: "generated.yaml") }
  let plan = fastest(5) { _ = Plan(check.graph!) }
  print(
    "validate: a generated graph of \(nodeCount) nodes, \(check.graph!.edges.count) edges, \(text.utf8.count / 1024) KiB"
  )
  row("YAML parse only (baseline)", parse, parse)
  row("validate (parse + every check)", validate, parse)
  row("compile the plan", plan, parse)
  print(
    "  target: validation under 1 s -> \(validate < 1 ? "met" : "NOT met") (\(String(format: "%.3f", validate)) s)"
  )
}

let benchmarks: [(String, () -> Void)] = [
  ("validate", benchValidate), ("hop", benchHop), ("handover", benchHandover),
  ("throughput", benchThroughput),
  ("checksum", benchChecksum),
  ("memory", benchMemory), ("store", benchStore), ("forward", benchForward), ("directory", benchDirectory),
  ("monitor", benchMonitor), ("wire", benchWire),
]
// `consume`: the consumer process the forward and directory benchmarks start (hidden).
// The allocator settings every Runtime uses, from the start, so baselines and
// Hidra run with the same allocator.
Runtime.tuneAllocator()

if CommandLine.arguments.count > 1 && CommandLine.arguments[1] == "consume" {
  exit(consumeCommand(Array(CommandLine.arguments.dropFirst(2))))
}
// `burn`: a busy process for the handover benchmark (hidden). Spins until it is
// killed, its parent is gone or a minute has passed, so none is left behind.
if CommandLine.arguments.count > 1 && CommandLine.arguments[1] == "burn" {
  let parent = getppid()
  let end = monotonicNanos() + 60_000_000_000
  let spins = Atomic<Int>(0)
  while getppid() == parent && monotonicNanos() < end {
    for _ in 0..<1_000_000 { spins.add(1, ordering: .relaxed) }
  }
  exit(0)
}
let selected = CommandLine.arguments.dropFirst().filter { !$0.hasPrefix("--") }
if let unknown = selected.first(where: { name in !benchmarks.contains { $0.0 == name } }) {
  print("hidra-bench: no benchmark '\(unknown)'; choose from \(benchmarks.map(\.0).joined(separator: ", "))")
  exit(2)
}
var first = true
for (name, run) in benchmarks where selected.isEmpty || selected.contains(name) {
  if !first { print() }
  first = false
  run()
  fflush(nil)
}
