// The harness the runtime benchmarks share: two node types that exist only here
// (a counting sink and a source of premade frames), a stage factory that adds them
// to the real ones, and a helper that validates and runs a graph and times it.

import CXXHash
import Foundation
import HidraGraph
import HidraNodes
import HidraRuntime
import Synchronization

/// What one counting sink received, readable from any thread once the run is over.
final class Tally: Sendable {
  let frames = Atomic<Int>(0)
  let bytes = Atomic<Int>(0)
}

/// The node types of the harness, declared like the real ones so the graph is
/// validated by the same validator.
enum HarnessNodes {
  /// `count`: a sink (kind `forward`, so it has no output) that counts data frames
  /// and their bytes and does nothing else.
  static let count = NodeTypeSpec(
    name: "count", kind: .forward, summary: "benchmark sink: counts data frames and bytes", options: [])

  /// `premade`: a source that sends the same few premade payloads again and again,
  /// `count` data frames in one series, without filling anything.
  static let premade = NodeTypeSpec(
    name: "premade", kind: .source, summary: "benchmark source: resends premade payloads",
    options: [
      OptionSpec("count", .integer(min: 1), required: true, doc: "Data frames to send."),
      OptionSpec(
        "hold", .boolean, default: "false",
        doc: "After the last frame, wait until the run is stopped before ending the series."),
    ],
    // Synthetic, as `generate` is.
    canWait: true)

  /// `stream`: `generate` as a source that cannot wait (a detector stream, say):
  /// the edges it feeds are not paced and fill up to their buffers.
  static let stream: NodeTypeSpec = {
    var spec = GenerateSource.spec
    spec.name = "stream"
    spec.summary = "benchmark source: generate, with unpaced edges"
    spec.canWait = false
    return spec
  }()

  static let catalog = NodeCatalog(NodeTypes.all + [count, premade, stream])
}

/// The in-situ baseline of `hidra-bench checksum`: a premade source given one
/// times, for each batch, making its frames and emitting them (through the
/// fused checksum node, onto the edge: the checksum stage's work), then hashes
/// as many of `payloads` with XXH3 directly and times that: the same thread,
/// the same moment, the same sizes, so the machine's drift (a quarter over
/// seconds here) falls on all alike. `payloads` is a set of its own, as large
/// as the node's, so that neither reads what the other has just read.
final class InSituBaseline: Sendable {
  let payloads: [Payload]
  /// Nanoseconds spent making batches of frames (the source's work), emitting
  /// them (the checksum stage's), and hashing directly.
  let makeNanos = Atomic<Int>(0)
  let stageNanos = Atomic<Int>(0)
  let directNanos = Atomic<Int>(0)
  /// The direct digests, folded: kept so the hashing cannot be optimized away.
  let digests = Atomic<UInt64>(0)

  init(payloads: [Payload]) { self.payloads = payloads }

  /// What one run measured: `blockedNanos` is the time the source's thread
  /// waited for room on its edge (inside emitting), from the edge's counters.
  func ratios(blockedNanos: Int) -> (stage: Double, withSource: Double, waited: Double) {
    let (make, stage, direct) = (load(makeNanos), load(stageNanos), load(directNanos))
    return (
      Double(direct) / Double(max(1, stage - blockedNanos)), Double(direct) / Double(max(1, make + stage)),
      Double(blockedNanos) / Double(max(1, make + stage))
    )
  }

  private func load(_ nanos: borrowing Atomic<Int>) -> Int { nanos.load(ordering: .relaxed) }
}

/// The real stage factory (`NodeRuntime`) plus the harness's node types.
struct HarnessFactory: StageFactory {
  let real = NodeRuntime()

  var catalog: NodeCatalog? { HarnessNodes.catalog }
  /// One tally per `count` node, by node name.
  let tallies: [String: Tally]
  /// The payloads every `premade` node sends, in turn.
  let premade: [Payload]
  /// The metadata of every premade frame (its id, series and frame are set per frame).
  var premadeMeta = FrameMeta()
  /// Given, every `premade` node measures against it (`InSituBaseline`).
  var baseline: InSituBaseline?

  var runnableTypes: Set<String> { real.runnableTypes.union(["count", "premade", "stream"]) }

  func makeBody(for node: Node, in graph: Graph) throws -> any StageBody {
    switch node.type {
    case "count": return CountSink(tally: tallies[node.name]!)
    case "stream":
      var generate = node
      generate.type = "generate"
      return try real.makeBody(for: generate, in: graph)
    case "premade":
      return PremadeSource(
        payloads: premade, count: node["count"]?.integer ?? 1, meta: premadeMeta,
        hold: node["hold"]?.boolean ?? false, baseline: baseline)
    default: return try real.makeBody(for: node, in: graph)
    }
  }
}

/// Receives every frame and counts the data frames and their bytes.
struct CountSink: StageBody {
  let tally: Tally

  mutating func run(_ context: StageContext) throws {
    var frames = 0
    var bytes = 0
    while let frame = context.receive() {
      guard frame.kind == .data else { continue }
      frames += 1
      bytes += frame.byteCount
    }
    tally.frames.store(frames, ordering: .relaxed)
    tally.bytes.store(bytes, ordering: .relaxed)
  }
}

/// Sends `count` data frames whose payloads are `payloads` in turn (shared, never
/// filled), between a series start and a series end; in batches, as a source that
/// has frames at hand does (`FrameBatch`).
struct PremadeSource: StageBody {
  let payloads: [Payload]
  let count: Int
  var meta = FrameMeta()
  var hold = false
  var baseline: InSituBaseline?

  mutating func run(_ context: StageContext) throws {
    var id: UInt64 = 1
    let template = meta
    guard context.emit(.seriesStart(1, id: id)) else { return }
    var next = 0  // the payload to send: counted round, not `index % payloads.count` (a division per frame)
    var batch = FrameBatch()
    var baselineNext = 0
    var started = monotonicNanos()  // when making the current batch began
    for index in 0..<count {
      if context.isStopping { break }
      id += 1
      // The template with this frame's numbers, straight into the frame: its
      // payload description is shared (boxed), as a source shares it within a
      // series. Binding new metadata to a name first cost whole copies of it.
      var frame = Frame(kind: .data, meta: template, parts: PayloadParts(payloads[next]))
      (frame.meta.id, frame.meta.series, frame.meta.frame) = (id, 1, index)
      batch.append(consume frame)
      next = next + 1 == payloads.count ? 0 : next + 1
      if batch.isFull || index == count - 1 {
        let frames = batch.count
        let made = baseline == nil ? 0 : monotonicNanos()  // read only when measuring in situ
        guard context.emit(&batch) else { return }
        if let baseline {
          started = Self.hashDirectly(frames, baseline, from: &baselineNext, started: started, made: made)
        }
      }
    }
    guard context.emit(&batch) else { return }
    while hold && !context.isStopping { usleep(10_000) }
    context.emit(.seriesEnd(1, id: id + 1, frames: count))
  }

  /// Counts the time from `started` to `made` as making the batch, and from
  /// `made` to now as emitting it (the checksum stage's); hashes `count` of the
  /// baseline's payloads (from `next` on) and counts that time as the direct
  /// hashing's. Returns when it finished.
  static func hashDirectly(
    _ count: Int, _ baseline: InSituBaseline, from next: inout Int, started: UInt64, made: UInt64
  )
    -> UInt64
  {
    let emitted = monotonicNanos()
    var digests: UInt64 = 0
    for _ in 0..<count {
      let bytes = baseline.payloads[next].bytes
      digests ^= hidra_xxh3_64(bytes.baseAddress, bytes.count)
      next = next + 1 == baseline.payloads.count ? 0 : next + 1
    }
    let hashed = monotonicNanos()
    baseline.makeNanos.add(Int(made - started), ordering: .relaxed)
    baseline.stageNanos.add(Int(emitted - made), ordering: .relaxed)
    baseline.directNanos.add(Int(hashed - emitted), ordering: .relaxed)
    baseline.digests.store(baseline.digests.load(ordering: .relaxed) ^ digests, ordering: .relaxed)
    return hashed
  }
}

/// The outcome of one graph run.
struct GraphRun {
  /// Wall time from `Runtime.start()` to the end of `Runtime.wait()`.
  var seconds: Double
  /// CPU time of the whole process (every thread) over the same span.
  var cpuSeconds: Double
  /// The most data frames seen queued on one edge, sampled every tick.
  var peakQueuedFrames: Int
  /// The time producers spent waiting for room, over all edges.
  var blockedSeconds: Double
  /// What each `count` node received, by node name.
  var received: [String: (frames: Int, bytes: Int)]
  var graph: Graph
}

/// Validates `yaml` with the harness catalog (any error stops the benchmark),
/// runs it to its end, and times it. `tick` is called every `tickNanos` on the
/// calling thread while the graph runs (the memory benchmark samples RSS there).
func runGraph(
  _ yaml: String, premade: [Payload] = [], baseline: InSituBaseline? = nil, tickNanos: UInt64 = 100_000_000,
  tick: (() -> Void)? = nil
) -> GraphRun {
  let (runtime, graph, tallies) = prepareGraph(yaml, premade: premade, baseline: baseline)
  let start = monotonicNanos()
  let cpuStart = processCPUSeconds()
  runtime.start()
  var peakQueued = 0
  while !runtime.wait(timeoutNanos: tickNanos) {
    for edge in runtime.metrics.edges {
      peakQueued = max(peakQueued, edge.queuedFrames)
    }
    tick?()
  }
  let seconds = Double(monotonicNanos() - start) / 1e9
  let cpuSeconds = processCPUSeconds() - cpuStart
  precondition(runtime.failures.isEmpty, "benchmark graph failed: \(runtime.failures)")
  let blocked = runtime.metrics.edges.reduce(0) { $0 + $1.blockedNanos.load(ordering: .relaxed) }
  return GraphRun(
    seconds: seconds, cpuSeconds: cpuSeconds, peakQueuedFrames: peakQueued,
    blockedSeconds: Double(blocked) / 1e9,
    received: tallies.mapValues {
      ($0.frames.load(ordering: .relaxed), $0.bytes.load(ordering: .relaxed))
    }, graph: graph)
}

/// Validates `yaml` with the harness catalog (any error stops the benchmark) and
/// makes its runtime, not started yet, with a tally for each `count` node.
func prepareGraph(_ yaml: String, premade: [Payload] = [], baseline: InSituBaseline? = nil) -> (
  Runtime, Graph, [String: Tally]
) {
  let check = GraphValidator(catalog: HarnessNodes.catalog).validate(text: yaml, file: "bench.yaml")
  guard check.isValid, let graph = check.graph else {
    fatalError(
      "benchmark graph is invalid:\n\(check.diagnostics.sorted.map(\.description).joined(separator: "\n"))")
  }
  var tallies: [String: Tally] = [:]
  for node in graph.nodes where node.type == "count" { tallies[node.name] = Tally() }
  do {
    return (
      try Runtime(
        graph: graph, factory: HarnessFactory(tallies: tallies, premade: premade, baseline: baseline)), graph,
      tallies
    )
  } catch {
    fatalError("cannot run the benchmark graph: \(error)")
  }
}

/// CPU time this process used so far, over all its threads (user and system).
func processCPUSeconds() -> Double {
  var time = timespec()
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &time)
  return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

/// Payloads with the content `generate` would give them (seed 0), made once.
func premadePayloads(size: Int, count: Int) -> [Payload] {
  let content = GeneratedContent(seed: 0, size: size)
  return (0..<count).map { frame in Payload(count: size) { content.fill($0, series: 1, frame: frame) } }
}

// MARK: - Files

/// Writes all of `bytes` to `fd`; `path` names the file if that fails.
func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, _ path: String) {
  var offset = 0
  while offset < bytes.count {
    let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
    precondition(written > 0, "write \(path) failed: \(errno)")
    offset += written
  }
}

/// What a store does with each file at least: creates `temporary`, writes
/// `bytes`, syncs it if asked, closes it and renames it to `destination`.
func writeAtomically(_ bytes: UnsafeRawBufferPointer, temporary: String, destination: String, sync: Bool) {
  let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
  precondition(fd >= 0, "cannot create \(temporary): \(errno)")
  writeAll(fd, bytes, temporary)
  if sync { precondition(fsync(fd) == 0, "fsync \(temporary) failed: \(errno)") }
  close(fd)
  precondition(rename(temporary, destination) == 0, "rename \(temporary) failed: \(errno)")
}

// MARK: - Options and printing

/// Command-line settings shared by the benchmarks.
enum BenchOptions {
  /// `--quick` (or `HIDRA_BENCH_QUICK=1`): smaller volumes, one round; for a smoke run.
  static let quick =
    CommandLine.arguments.contains("--quick")
    || ProcessInfo.processInfo.environment["HIDRA_BENCH_QUICK"] == "1"

  /// `--size=1MiB` (repeatable): only these frame sizes, e.g. to profile one row.
  static let sizes: Set<Int> = Set(
    CommandLine.arguments.filter { $0.hasPrefix("--size=") }.compactMap {
      Units.parseSize(String($0.dropFirst("--size=".count))).map { Int($0) }
    })

  /// `--rounds=N`: measure each row N times and keep the best (a benchmark's own
  /// default otherwise, 1 with --quick).
  static func rounds(default normal: Int) -> Int { integer("rounds") ?? (quick ? 1 : normal) }

  /// The first `--NAME=N` given with an integer N, if any.
  static func integer(_ name: String) -> Int? {
    let prefix = "--\(name)="
    return CommandLine.arguments.lazy.filter { $0.hasPrefix(prefix) }.compactMap {
      Int($0.dropFirst(prefix.count))
    }.first
  }

  /// `--only=raw,a,b,rawhash`: measure only these columns of `throughput` (to profile one);
  /// `forward` has raw, acked and noack, `store` loop, hidra and default.
  static let only: Set<String> = Set(
    CommandLine.arguments.filter { $0.hasPrefix("--only=") }.flatMap {
      $0.dropFirst("--only=".count).split(separator: ",").map { $0.lowercased() }
    })

  /// Whether the column `name` (e.g. raw, a, b, rawhash) is measured.
  static func measures(_ name: String) -> Bool { only.isEmpty || only.contains(name) }

  /// `--distinct=N`: `checksum` cycles through N premade payloads (its own
  /// default otherwise).
  static func distinct(default normal: Int) -> Int { integer("distinct").map { max($0, 1) } ?? normal }

  /// `--verbose`: print every measurement, not only the best.
  static let verbose = CommandLine.arguments.contains("--verbose")

  /// The sizes of `all` that `--size=` selected (all of them without `--size=`).
  static func selected(_ all: [Int]) -> [Int] { sizes.isEmpty ? all : all.filter(sizes.contains) }
}

/// `4 KiB`, `64 KiB`, `1 MiB`: a power-of-two size, for table rows.
func sizeName(_ bytes: Int) -> String {
  if bytes >= 1 << 30 { return "\(bytes >> 30) GiB" }
  if bytes >= 1 << 20 { return "\(bytes >> 20) MiB" }
  if bytes >= 1 << 10 { return "\(bytes >> 10) KiB" }
  return "\(bytes) B"
}

/// A size as the graph language writes it, e.g. `64KiB`.
func yamlSize(_ bytes: Int) -> String { sizeName(bytes).replacingOccurrences(of: " ", with: "") }

/// Formats `value` with `decimals` digits after the point; `-` for a value that
/// was not measured (zero, infinite or NaN).
func fixed(_ value: Double, _ decimals: Int = 2) -> String {
  value.isFinite && value != 0 ? String(format: "%.\(decimals)f", value) : "-"
}

/// Prints rows as a table whose columns are as wide as their widest cell; the
/// first row is the header, followed by a rule. Text is right-aligned except in
/// the first column.
func printTable(_ rows: [[String]]) {
  guard let header = rows.first else { return }
  var widths = [Int](repeating: 0, count: header.count)
  for row in rows {
    for (column, cell) in row.enumerated() { widths[column] = max(widths[column], cell.count) }
  }
  func line(_ row: [String]) -> String {
    let cells = row.enumerated().map { column, cell -> String in
      let pad = String(repeating: " ", count: widths[column] - cell.count)
      return column == 0 ? cell + pad : pad + cell
    }
    return "  " + cells.joined(separator: " | ")
  }
  print(line(header))
  print("  " + widths.map { String(repeating: "-", count: $0) }.joined(separator: "-|-"))
  for row in rows.dropFirst() { print(line(row)) }
}

/// The best of several measurements of a rate (the noise on a shared machine only
/// ever makes things slower).
func best(_ values: [Double]) -> Double { values.max() ?? 0 }

/// The middle value (of an even count, the mean of the middle two); 0 for none.
func median(_ values: [Double]) -> Double {
  guard !values.isEmpty else { return 0 }
  let sorted = values.sorted()
  let middle = sorted.count / 2
  return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}
