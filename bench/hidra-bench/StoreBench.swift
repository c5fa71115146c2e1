// store: generate -> store against a plain write+rename loop doing the same work
// in the same run (issue "Store and forward": target >= 0.9 of the loop).
//
// Rows on tmpfs (/dev/shm) measure what Hidra adds in CPU, with no disk in the
// way; rows on the disk (the system's temporary directory) are what a user gets,
// and move with whatever else uses the (shared) disk. Before every measurement
// the previous files are removed and the file systems synced, outside the timed
// part, so one measurement's writeback never lands in the next; the order of the
// two sides alternates from round to round.

import Foundation
import HidraNodes
import HidraRuntime

/// The baseline: one thread makes each frame as `generate` does (a fresh buffer
/// filled by `GeneratedContent.fill`), writes it to a temporary file, syncs it if
/// asked, and renames it into place.
func plainStoreLoop(size: Int, count: Int, fsyncFile: Bool, directory: String) -> Double {
  let content = GeneratedContent(seed: 0, size: size)
  let start = monotonicNanos()
  for frame in 0..<count {
    let payload = Payload(count: size) { content.fill($0, series: 1, frame: frame) }
    writeAtomically(
      payload.bytes, temporary: directory + "/.\(frame).bin.tmp", destination: directory + "/\(frame).bin",
      sync: fsyncFile)
  }
  return Double(monotonicNanos() - start) / 1e9
}

/// One row of the store benchmark.
struct StoreCase {
  /// `tmpfs` or `disk`.
  var place: String
  var size: Int
  var fsync: String
  /// Bytes written per measurement (a quarter with --quick).
  var volume: Int
}

/// Where each place writes: tmpfs is /dev/shm (the disk's temporary directory
/// stands in when there is none), disk the system's temporary directory.
func storeDirectory(_ place: String) -> String {
  var path = place == "tmpfs" ? benchScratchRoot() : NSTemporaryDirectory()
  while path.hasSuffix("/") { path.removeLast() }
  return path
}

/// The file system type of `path`, from /proc/mounts (the longest mount point
/// that is a prefix of it).
func fileSystemType(_ path: String) -> String {
  guard let mounts = try? String(contentsOfFile: "/proc/mounts", encoding: .utf8) else { return "?" }
  var best = ("", "?")
  for line in mounts.split(separator: "\n") {
    let fields = line.split(separator: " ")
    guard fields.count > 2 else { continue }
    let point = String(fields[1])
    let covers = point == "/" || path == point || path.hasPrefix(point + "/")
    if covers && point.count > best.0.count { best = (point, String(fields[2])) }
  }
  return best.1
}

/// generate -> store into `root`, with a 16-frame edge or (`defaultEdge`) the
/// default guaranteed one; checks every file is there and returns the run.
func storeGraph(size: Int, count: Int, fsync: String, root: String, defaultEdge: Bool) -> GraphRun {
  let input = defaultEdge ? "det" : "{from: det, buffer: {frames: 16}}"
  let run = runGraph(
    """
    nodes:
      det: {type: generate, size: \(size), count: \(count)}
      disk: {type: store, input: \(input), root: "\(root)", path: "{frame}.bin", fsync: \(fsync)}
    """)
  let stored = (try? FileManager.default.contentsOfDirectory(atPath: root).count) ?? 0
  precondition(stored == count, "the store wrote \(stored) of \(count) files")
  return run
}

func benchStore() {
  let rounds = BenchOptions.rounds(default: 3)
  var cases: [StoreCase] = []
  for size in BenchOptions.selected([64 << 10, 1 << 20, 4 << 20]) {
    cases.append(
      StoreCase(place: "tmpfs", size: size, fsync: "none", volume: size < 1 << 20 ? 1 << 30 : 2 << 30))
    cases.append(
      StoreCase(place: "disk", size: size, fsync: "file", volume: size < 1 << 20 ? 64 << 20 : 128 << 20))
  }
  // `--place=tmpfs` or `--place=disk`: only those rows.
  let places = CommandLine.arguments.filter { $0.hasPrefix("--place=") }.map { String($0.dropFirst(8)) }
  print(
    "store: generate -> store (16-frame edge) vs a plain write+rename loop (same fill, same files; "
      + "best of \(rounds) interleaved round\(rounds == 1 ? "" : "s"))")
  var rows = [
    [
      "place", "size", "fsync", "files", "loop MB/s", "hidra MB/s", "hidra/loop", "target", "met",
      "loop CPU us/file", "hidra CPU us/file", "CPU hidra/loop", "default edge MB/s", "default/loop",
      "its CPU us/file",
    ]
  ]
  for storeCase in cases where places.isEmpty || places.contains(storeCase.place) {
    let size = storeCase.size
    let count = max(16, storeCase.volume / (BenchOptions.quick ? 4 : 1) / size)
    let directory = storeDirectory(storeCase.place)
    let fsyncFile = storeCase.fsync == "file"
    // The default edge only on tmpfs: there nothing but the memory it takes differs.
    let withDefault = storeCase.place == "tmpfs" && BenchOptions.measures("default")
    var (loopRates, hidraRates, defaultRates) = ([Double](), [Double](), [Double]())
    var (loopCPU, hidraCPU, defaultCPU) = ([Double](), [Double](), [Double]())
    for round in 0..<rounds {
      let base = directory + "/hidra-bench-store-\(UUID().uuidString)"
      try! FileManager.default.createDirectory(atPath: base + "/loop", withIntermediateDirectories: true)
      defer {
        removeTree(base)
        sync()
      }
      // Each measurement starts with nothing dirty. On tmpfs each removes its files
      // at once; on the disk all wait for the end of the round: ext4 without a
      // journal (our VMs) skips inodes freed in the last 60-300 s when it creates
      // a file (`recently_deleted`), so removing the first side's files before the
      // second side runs would slow only the second side's file creation.
      let tidy = { (path: String) in if storeCase.place == "tmpfs" { removeTree(path) } }
      func measureLoop() {
        guard BenchOptions.measures("loop") else { return }
        sync()
        let cpu = processCPUSeconds()
        let seconds = plainStoreLoop(
          size: size, count: count, fsyncFile: fsyncFile, directory: base + "/loop")
        loopCPU.append(processCPUSeconds() - cpu)
        loopRates.append(Double(size * count) / seconds / 1e6)
        tidy(base + "/loop")
      }
      func measureHidra(defaultEdge: Bool) {
        guard defaultEdge ? withDefault : BenchOptions.measures("hidra") else { return }
        sync()
        let root = base + (defaultEdge ? "/default" : "/hidra")
        let run = storeGraph(
          size: size, count: count, fsync: storeCase.fsync, root: root, defaultEdge: defaultEdge)
        (defaultEdge ? { defaultCPU.append($0) } : { hidraCPU.append($0) })(run.cpuSeconds)
        let rate = Double(size * count) / run.seconds / 1e6
        (defaultEdge ? { defaultRates.append($0) } : { hidraRates.append($0) })(rate)
        tidy(root)
      }
      // Alternate which side goes first: what one leaves behind (in the page
      // cache, in the file system's allocator) must not always hit the same side.
      if round % 2 == 0 {
        measureLoop()
        measureHidra(defaultEdge: false)
        measureHidra(defaultEdge: true)
      } else {
        measureHidra(defaultEdge: true)
        measureHidra(defaultEdge: false)
        measureLoop()
      }
      if BenchOptions.verbose {
        print(
          "  \(storeCase.place) \(sizeName(size)) fsync \(storeCase.fsync): loop \(fixed(loopRates.last ?? 0, 0)) MB/s, "
            + "hidra \(fixed(hidraRates.last ?? 0, 0)) MB/s, default edge \(fixed(defaultRates.last ?? 0, 0)) MB/s"
        )
      }
    }
    let ratio = best(hidraRates) / best(loopRates)
    let perFile = { (cpu: [Double]) in (cpu.min() ?? 0) / Double(count) * 1e6 }
    rows.append([
      storeCase.place, sizeName(size), storeCase.fsync, String(count), fixed(best(loopRates), 0),
      fixed(best(hidraRates), 0), fixed(ratio), ">= 0.9",
      loopRates.isEmpty || hidraRates.isEmpty ? "-" : ratio >= 0.9 ? "yes" : "NO",
      fixed(perFile(loopCPU), 1), fixed(perFile(hidraCPU), 1), fixed(perFile(hidraCPU) / perFile(loopCPU)),
      fixed(best(defaultRates), 0), fixed(best(defaultRates) / best(loopRates)),
      fixed(perFile(defaultCPU), 1),
    ])
  }
  printTable(rows)
  let tmpfs = storeDirectory("tmpfs")
  let disk = storeDirectory("disk")
  print("  tmpfs: below \(tmpfs) (\(fileSystemType(tmpfs))); disk: below \(disk) (\(fileSystemType(disk)))")
  print("  fsync file syncs every file before its rename; everything is synced before each measurement")
  print("  CPU: all threads of the process per file (least of the rounds); hidra runs 2 threads, the loop 1")
  print("  default edge: the same graph with the default guaranteed edge (1024 frames/1 GiB), on tmpfs only;")
  print("  paced, since generate can wait: it stops at 4 MiB queued rather than running 1 GiB ahead")
}
