// `memory`: peak resident memory of a long run against what its buffers allow.
//
// generate -> checksum -> count moves about 20 GB (each row runs twice and the
// worse peak is kept: a bound is about the worst case). VmRSS is sampled from
// /proc/self/status every 100 ms during the run and VmHWM (the kernel's peak,
// reset before the run) read at the end. The bound is 64 MiB plus the configured
// buffer bytes: over the edges, min(buffer frames x frame size, buffer bytes).
//
// Each row runs in a child process of its own (unless `--in-process`), so that
// memory the allocator kept from earlier rows or benchmarks does not count.

import Foundation
import HidraGraph
import HidraRuntime

#if canImport(Glibc)
  import Glibc
#endif

/// glibc's malloc_trim, which the Glibc module does not import: gives free heap
/// memory back to the kernel between in-process rows.
@_silgen_name("malloc_trim")
func mallocTrim(_ pad: Int) -> Int32

/// VmRSS and VmHWM of this process, in bytes.
func residentMemory() -> (rss: Int, peak: Int) {
  guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return (0, 0) }
  var rss = 0
  var peak = 0
  for line in text.split(separator: "\n") {
    let fields = line.split { $0 == " " || $0 == "\t" }
    guard fields.count >= 2, let kib = Int(fields[1]) else { continue }
    if fields[0] == "VmRSS:" { rss = kib << 10 }
    if fields[0] == "VmHWM:" { peak = kib << 10 }
  }
  return (rss, peak)
}

/// Resets VmHWM to the current RSS (Linux >= 4.0); false when the kernel refused.
func resetPeakMemory() -> Bool {
  guard let file = fopen("/proc/self/clear_refs", "w") else { return false }
  defer { fclose(file) }
  return fputs("5", file) >= 0
}

/// The buffer bytes a graph's edges may hold: per edge, min(frames x size, bytes).
func configuredBufferBytes(_ graph: Graph, frameSize: Int) -> Int {
  graph.edges.reduce(0) { total, edge in
    total + min(edge.qos.bufferFrames * frameSize, Int(clamping: edge.qos.bufferBytes))
  }
}

/// One configuration of the memory benchmark.
struct MemoryCase {
  var size: Int
  /// The `buffer:` of both edges, or nil for the default guaranteed buffer.
  var buffer: String?
  /// The checksum node's algorithms; sha256 makes it slower than generate, so its
  /// input edge stays full and the bound is tested, not just respected.
  var algorithms = "xxh3"
  /// This row moves 1/volumeShare of the benchmark's volume.
  var volumeShare = 1
  /// `stream` (a generate whose edges are not paced, so they fill up to their
  /// buffers: the bound is what is tested) or `generate` (paced edges).
  var source = "stream"

  func yaml(frames: Int) -> String {
    let input = { (from: String) in buffer.map { "{from: \(from), buffer: \($0)}" } ?? from }
    return """
      graph: bench-memory
      nodes:
        gen:
          type: \(source)
          size: \(yamlSize(size))
          count: \(frames)
        sum:
          type: checksum
          input: \(input("gen"))
          algorithms: [\(algorithms)]
        sink:
          type: count
          input: \(input("sum"))
      """
  }
}

/// The rows of the memory benchmark. The sha256 row moves a quarter of the volume:
/// its edge is full from the first frames on, and sha256 is slow.
let memoryCases = [
  MemoryCase(size: 4 << 20, buffer: "{frames: 16}"),
  MemoryCase(size: 1 << 20, buffer: "{frames: 16}"),
  MemoryCase(size: 4 << 20, buffer: "{frames: 16}", algorithms: "xxh3, sha256", volumeShare: 4),
  MemoryCase(size: 4 << 20, buffer: nil),
  MemoryCase(size: 4 << 20, buffer: nil, source: "generate"),
]

/// The column of the table that holds peak/bound (rounds keep the worst row).
let peakRatioColumn = 10

func benchMemory() {
  let volume = BenchOptions.quick ? 4_000_000_000 : 20_000_000_000
  let rounds = BenchOptions.rounds(default: 2)
  let inProcess = CommandLine.arguments.contains("--in-process")
  if let only = BenchOptions.integer("case") {
    // A child: one row, its cells on one line, tab-separated, for the parent.
    print(memoryRow(memoryCases[only], volume: volume).joined(separator: "\t"))
    return
  }
  print(
    "memory: peak RSS of generate -> checksum -> count (\(fixed(Double(volume) / 1e9, 0)) GB per row) "
      + "vs 64 MiB + configured buffer bytes (worst of \(rounds))")
  var rows = [
    [
      "frame", "source", "edge buffers", "checksum", "frames", "buffers MiB", "bound MiB", "RSS before MiB",
      "sampled peak MiB", "VmHWM MiB", "peak/bound", "under", "(peak-before)/buffers", "GB/s",
    ]
  ]
  for index in memoryCases.indices {
    var worst: [String]? = nil
    for _ in 0..<rounds {
      let row: [String]
      if inProcess {
        _ = mallocTrim(0)
        row = memoryRow(memoryCases[index], volume: volume)
      } else {
        // Each row in a fresh process: memory the allocator kept from an earlier
        // row (or benchmark) would otherwise count against this one.
        let arguments = ["memory", "--case=\(index)"] + (BenchOptions.quick ? ["--quick"] : [])
        guard let line = childOutput(arguments)?.split(separator: "\n").last else { continue }
        row = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
      }
      let ratio = { (cells: [String]) in Double(cells[peakRatioColumn]) ?? 0 }
      if row.count == rows[0].count, worst.map({ ratio(row) > ratio($0) }) ?? true { worst = row }
    }
    rows.append(worst ?? [sizeName(memoryCases[index].size), "the child process failed"])
  }
  let width = rows[0].count
  printTable(rows.map { $0 + Array(repeating: "", count: max(0, width - $0.count)) })
  print(
    "  bound = 64 MiB + sum over edges of min(buffer frames x frame size, buffer bytes); target: peak under it"
  )
  print("  peak = max(VmHWM, VmRSS sampled every 100 ms); each run in a fresh process (VmHWM reset)")
}

/// Runs one configuration in this process and returns its table row.
func memoryRow(_ memoryCase: MemoryCase, volume: Int) -> [String] {
  let mib = Double(1 << 20)
  let frames = volume / memoryCase.volumeShare / memoryCase.size
  let resetWorked = resetPeakMemory()
  let before = residentMemory().rss
  var sampled = before
  let run = runGraph(memoryCase.yaml(frames: frames), tickNanos: 100_000_000) {
    sampled = max(sampled, residentMemory().rss)
  }
  let end = residentMemory()
  precondition(run.received["sink"]?.frames == frames, "the memory graph lost frames")
  let buffers = configuredBufferBytes(run.graph, frameSize: memoryCase.size)
  let bound = (64 << 20) + buffers
  let peak = max(end.peak, sampled)
  return [
    sizeName(memoryCase.size), memoryCase.source, memoryCase.buffer ?? "default (1024 frames/1 GiB)",
    memoryCase.algorithms,
    String(frames), fixed(Double(buffers) / mib, 0), fixed(Double(bound) / mib, 0),
    fixed(Double(before) / mib, 0),
    fixed(Double(sampled) / mib, 0), fixed(Double(end.peak) / mib, 0) + (resetWorked ? "" : " (not reset)"),
    fixed(Double(peak) / Double(bound)), peak < bound ? "yes" : "NO",
    fixed(Double(peak - before) / Double(buffers)),
    fixed(Double(frames * memoryCase.size) / run.seconds / 1e9),
  ]
}

/// Runs this executable again with `arguments` and returns what it printed, or
/// nil when it failed (its stderr goes to ours).
func childOutput(_ arguments: [String]) -> String? {
  fflush(nil)
  let process = Process()
  process.executableURL = URL(fileURLWithPath: "/proc/self/exe")
  process.arguments = arguments
  let pipe = Pipe()
  process.standardOutput = pipe
  do {
    try process.run()
  } catch {
    print("  could not start a child process: \(error)")
    return nil
  }
  let data = pipe.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  guard process.terminationStatus == 0 else { return nil }
  return String(decoding: data, as: UTF8.self)
}
