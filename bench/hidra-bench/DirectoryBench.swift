// `directory`: files written into a watched tree, stored and forwarded by Hidra
// while they are written, against the writer alone (issue "Directory source").
//
// Baseline (writer alone): one thread creates, writes and closes `count` files
// of `size` bytes in a fresh directory, as fast as it can.
//
// Hidra: directory -> store (fsync: file) + forward(push, acknowledged, listen
// on 127.0.0.1) -> a consumer process (`hidra-bench consume hidra`). Once the
// source watches and the consumer is connected, the same writer writes the same
// files into the watched tree. The time runs from the writer's first file to the
// moment the last file is both stored and received by the consumer, whichever
// is later. Every file must be stored once (the store's count, no errors, the
// stored tree holds exactly the files with their sizes) and received once (the
// consumer's count of frames and of distinct names, no duplicates).
//
// Both trees are on /dev/shm (tmpfs) when the machine has it, so the disk's
// speed (shared and noisy on our VMs) does not decide the ratio.
//
// Bound (copy beside the writer): what any store that copies must do at least,
// with nothing else. While the writer writes, a second thread copies each file
// as soon as the writer has closed it (it learns that from a counter, not from
// inotify): open, read, close, then create a temporary file, write, fsync,
// close and rename it into a second tree. No forward, no consumer, no
// metadata. Its rate over the writer's alone bounds what Hidra's store part can
// reach on this machine, whatever its code.

import Foundation
import HidraGraph
import HidraNodes
import HidraRuntime
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Where the directory benchmark writes: /dev/shm when it is a writable
/// directory, else the system's temporary directory.
func benchScratchRoot() -> String {
  access("/dev/shm", W_OK) == 0 ? "/dev/shm" : NSTemporaryDirectory()
}

/// Creates, writes and closes `count` files of `content.count` bytes in
/// `directory`, as fast as possible; returns the monotonic start and end.
/// `wrote`, when given, is called with each file's index once it is closed.
func writeFiles(
  _ directory: String, count: Int, content: [UInt8], wrote: ((Int) -> Void)? = nil
) -> (start: UInt64, end: UInt64) {
  let names = (0..<count).map { directory + "/" + benchFileName($0) }
  let start = monotonicNanos()
  content.withUnsafeBytes { bytes in
    for (index, name) in names.enumerated() {
      let fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
      precondition(fd >= 0, "cannot create \(name): \(errno)")
      writeAll(fd, bytes, name)
      close(fd)
      wrote?(index)
    }
  }
  return (start, monotonicNanos())
}

/// The name of the benchmark's `index`-th file.
func benchFileName(_ index: Int) -> String { String(format: "f_%06d.bin", index) }

/// How many files the writer has closed, and when the copier renamed its last
/// copy (monotonic nanoseconds): what the two threads of the bound share.
private final class CopyProgress: Sendable {
  let closed = Atomic<Int>(0)
  let finished = Atomic<UInt64>(0)
}

/// The bound: the writer writes `count` files into `base/copy-in` while another
/// thread copies each one, once closed, into `base/copy-out` (read, then write,
/// fsync and rename, as a store does). Returns seconds from the writer's first
/// file to the last copy renamed into place.
func copyBeside(base: String, count: Int, content: [UInt8]) -> Double {
  let (source, target) = (base + "/copy-in", base + "/copy-out")
  for directory in [source, target] {
    try! FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
  }
  let size = content.count
  // Paths are made before the clock starts, as the writer's are.
  let names = (0..<count).map(benchFileName)
  let paths = names.map { (source + "/" + $0, target + "/." + $0 + ".tmp", target + "/" + $0) }
  let progress = CopyProgress()
  let copied = DispatchSemaphore(value: 0)
  let copier = Thread {
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
    defer { buffer.deallocate() }
    for index in 0..<count {
      while progress.closed.load(ordering: .acquiring) <= index { sched_yield() }
      let (name, temporary, destination) = paths[index]
      let input = open(name, O_RDONLY | O_CLOEXEC)
      precondition(input >= 0, "cannot open \(name): \(errno)")
      var offset = 0
      while offset < size {
        let got = read(input, buffer + offset, size - offset)
        precondition(got > 0, "read \(name) failed: \(errno)")
        offset += got
      }
      close(input)
      writeAtomically(
        UnsafeRawBufferPointer(start: buffer, count: size), temporary: temporary, destination: destination,
        sync: true)
    }
    progress.finished.store(monotonicNanos(), ordering: .releasing)
    copied.signal()
  }
  copier.start()
  let written = writeFiles(source, count: count, content: content) { index in
    progress.closed.store(index + 1, ordering: .releasing)
  }
  copied.wait()
  let copies = (try? FileManager.default.contentsOfDirectory(atPath: target)) ?? []
  precondition(copies.count == count, "the copier left \(copies.count) files, expected \(count)")
  return Double(progress.finished.load(ordering: .acquiring) - written.start) / 1e9
}

/// Removes a benchmark tree (outside any timing).
func removeTree(_ path: String) {
  try? FileManager.default.removeItem(atPath: path)
}

/// One Hidra measurement: seconds from the first file written to the last one
/// stored and received, and how long the writer itself took meanwhile.
struct DirectoryRun {
  var seconds: Double
  var writerSeconds: Double
  /// CPU time of both processes (the writer's thread included) over the run.
  var cpuSeconds: Double
}

func hidraDirectory(base: String, count: Int, content: [UInt8]) -> DirectoryRun {
  let watched = base + "/in"
  let stored = base + "/out"
  try! FileManager.default.createDirectory(atPath: watched, withIntermediateDirectories: true)
  let port = freePort()
  let endpoint = "tcp://127.0.0.1:\(port)"
  let consumer = ConsumerProcess(mode: "hidra", endpoint: endpoint, count: count)
  let (runtime, _, _) = prepareGraph(
    """
    graph: bench-directory
    nodes:
      watch:
        type: directory
        path: \(watched)
      disk:
        type: store
        input: watch
        root: \(stored)
        path: "{relpath}"
      out:
        type: forward
        input: watch
        pattern: push
        listen: \(endpoint)
    """)
  let source = runtime.metrics.node("watch")!
  let store = runtime.metrics.node("disk")!
  runtime.start()
  // The source counts its series start once its watches are in place.
  guard waitUntil(seconds: 30, { source.framesOut.load(ordering: .relaxed) >= 1 }) else {
    runtime.abort()
    fatalError("the directory source did not start")
  }
  consumer.expect("connected", within: 30)
  usleep(20_000)  // the consumer's `ready` reaches the forward

  let cpu = processCPUSeconds()
  let written = writeFiles(watched, count: count, content: content)
  // The last file stored: the store counts each file once it is renamed into place.
  guard waitUntil(seconds: 120, every: 1000, { store.framesOut.load(ordering: .relaxed) >= count }) else {
    runtime.abort()
    fatalError("the store stored \(store.framesOut.load(ordering: .relaxed)) of \(count) files")
  }
  let storedAt = monotonicNanos()
  guard let result = consumer.result(within: 120) else {
    runtime.abort()
    fatalError("the directory consumer failed")
  }
  let cpuSeconds = processCPUSeconds() - cpu + result.cpuSeconds
  runtime.requestStop()
  if !runtime.wait(timeoutNanos: 60_000_000_000) {
    runtime.abort()
    fatalError("the directory graph did not stop")
  }
  precondition(runtime.failures.isEmpty, "the directory graph failed: \(runtime.failures)")

  // No loss, no duplicate: stored once each, received once each.
  let size = content.count
  precondition(
    result.frames == count && result.distinct == count && result.duplicates == 0 && result.errors == "-"
      && result.bytes == count * size,
    "the consumer got \(result.frames) of \(count) files (\(result.distinct) distinct, "
      + "\(result.duplicates) duplicates, errors \(result.errors))")
  let storedCount = store.framesOut.load(ordering: .relaxed)
  let errors = runtime.metrics.nodes.map { $0.errors.load(ordering: .relaxed) }.reduce(0, +)
  precondition(
    storedCount == count && errors == 0, "stored \(storedCount) of \(count) files, \(errors) errors")
  let files = (try? FileManager.default.contentsOfDirectory(atPath: stored)) ?? []
  precondition(files.count == count, "the stored tree holds \(files.count) entries, expected \(count)")
  for name in files {
    var info = stat()
    precondition(
      stat(stored + "/" + name, &info) == 0 && Int(info.st_size) == size,
      "stored file \(name) is missing or has the wrong size")
  }
  let end = max(storedAt, result.end)
  return DirectoryRun(
    seconds: Double(end - written.start) / 1e9, writerSeconds: Double(written.end - written.start) / 1e9,
    cpuSeconds: cpuSeconds)
}

func benchDirectory() {
  let rounds = BenchOptions.rounds(default: 3)
  let root = benchScratchRoot()
  let cases =
    BenchOptions.quick ? [(2_000, 4 << 10), (250, 1 << 20)] : [(10_000, 4 << 10), (1_000, 1 << 20)]
  print(
    "directory: files written into a watched tree -> store + forward(push, acked) -> consumer process, "
      + "vs the writer alone (best of \(rounds) interleaved round\(rounds == 1 ? "" : "s"))")
  var rows = [
    [
      "files", "size", "writer files/s", "writer MB/s", "hidra files/s", "hidra MB/s", "hidra/writer",
      "target",
      "met", "writer during hidra files/s", "writer CPU us/file", "hidra CPU us/file", "copy files/s",
      "copy/writer", "hidra/copy",
    ]
  ]
  for (count, size) in cases where BenchOptions.sizes.isEmpty || BenchOptions.sizes.contains(size) {
    // Different bytes in each position, the same for every file.
    let content = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }
    var alone: [Double] = []
    var hidra: [Double] = []
    var during: [Double] = []
    var copy: [Double] = []
    var (writerCPU, hidraCPU) = ([Double](), [Double]())
    for _ in 0..<rounds {
      let base = root + "/hidra-bench-directory-\(UUID().uuidString)"
      try! FileManager.default.createDirectory(atPath: base + "/alone", withIntermediateDirectories: true)
      let cpu = processCPUSeconds()
      let written = writeFiles(base + "/alone", count: count, content: content)
      writerCPU.append(processCPUSeconds() - cpu)
      alone.append(Double(count) / (Double(written.end - written.start) / 1e9))
      removeTree(base + "/alone")
      copy.append(Double(count) / copyBeside(base: base, count: count, content: content))
      removeTree(base + "/copy-in")
      removeTree(base + "/copy-out")
      let run = hidraDirectory(base: base, count: count, content: content)
      hidra.append(Double(count) / run.seconds)
      during.append(Double(count) / run.writerSeconds)
      hidraCPU.append(run.cpuSeconds)
      removeTree(base)
      if BenchOptions.verbose {
        print(
          "  \(count) x \(sizeName(size)): writer \(fixed(alone.last!, 0))/s, hidra \(fixed(hidra.last!, 0))/s "
            + "(writer meanwhile \(fixed(during.last!, 0))/s), copy beside the writer \(fixed(copy.last!, 0))/s"
        )
      }
    }
    let (writerRate, hidraRate, copyRate) = (best(alone), best(hidra), best(copy))
    let ratio = hidraRate / writerRate
    rows.append([
      String(count), sizeName(size), fixed(writerRate, 0), fixed(writerRate * Double(size) / 1e6, 0),
      fixed(hidraRate, 0), fixed(hidraRate * Double(size) / 1e6, 0), fixed(ratio), ">= 0.9",
      ratio >= 0.9 ? "yes" : "NO", fixed(best(during), 0),
      fixed((writerCPU.min() ?? 0) / Double(count) * 1e6, 1),
      fixed((hidraCPU.min() ?? 0) / Double(count) * 1e6, 1), fixed(copyRate, 0), fixed(copyRate / writerRate),
      fixed(hidraRate / copyRate),
    ])
  }
  printTable(rows)
  print(
    "  hidra: from the first file written to the last one both stored (fsync: file) and received by the consumer"
  )
  print("  hidra CPU: both processes, every thread (the writer's included), least of the rounds")
  print(
    "  copy: the bound. A thread copies each file (read; write, fsync, rename) once the writer closed it, "
      + "beside the writer; no store that copies can beat it here")
  print(
    "  both trees below \(root)\(root == "/dev/shm" ? " (tmpfs)" : ""); every file checked stored once and received once"
  )
  let events = (try? String(contentsOfFile: "/proc/sys/fs/inotify/max_queued_events", encoding: .utf8))
  print(
    "  inotify max_queued_events: \(events?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?") "
      + "(a full queue makes the source rescan the tree)")
}
