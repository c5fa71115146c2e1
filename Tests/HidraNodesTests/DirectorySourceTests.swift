import Foundation
import HidraGraph
import HidraRuntime
import Testing

@testable import HidraNodes

#if canImport(Glibc)
  import Glibc
#endif

/// The `directory` source, run against real directories with a `record` sink.
/// Every wait is bounded; a run that does not stop in time is aborted.
@Suite(.serialized) struct DirectorySourceTests {
  static func scratch() -> String {
    let path = NSTemporaryDirectory() + "hidra-dir-\(UUID().uuidString)"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
  }

  /// Writes `bytes` with one open/write/close (one close-write event, no temporary file).
  static func write(_ path: String, _ bytes: [UInt8], append: Bool = false) {
    let descriptor = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0o644)
    precondition(descriptor >= 0, "open \(path): \(errno)")
    var done = 0
    bytes.withUnsafeBytes { buffer in
      while done < buffer.count {
        let count = Glibc.write(descriptor, buffer.baseAddress! + done, buffer.count - done)
        precondition(count > 0)
        done += count
      }
    }
    close(descriptor)
  }

  static func mkdir(_ path: String) { precondition(Glibc.mkdir(path, 0o755) == 0, "mkdir \(path)") }

  static func bytes(_ count: Int, seed: Int) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ seed &* 7 &+ ($0 >> 8)) }
  }

  /// A running graph whose source is `directory` (node `dir`) and sink `record` (node `out`).
  struct Run {
    let runtime: Runtime
    let recorder: Recorder

    /// `pauses`: the sink sleeps this long after the data frame with this index,
    /// on an edge of 4 frames, so the source stalls and stops reading events.
    init(_ options: String, root: String, pauses: [Int: Double] = [:]) throws {
      let input = pauses.isEmpty ? "dir" : "{from: dir, delivery: guaranteed, buffer: {frames: 4}}"
      let yaml = """
        nodes:
          dir: {type: directory, path: "\(root)"\(options.isEmpty ? "" : ", " + options)}
          out: {type: record, input: \(input)}
        """
      let result = GraphValidator(catalog: Harness.catalog).validate(text: yaml, file: "test.yaml")
      #expect(!result.diagnostics.hasErrors, "\(result.diagnostics.sorted.map(\.description))")
      recorder = Recorder()
      runtime = try Runtime(
        graph: try #require(result.graph), factory: PausingFactory(recorder: recorder, pauses: pauses))
      runtime.start()
    }

    var data: [Frame] { recorder.data(of: "out") }
    var names: [String] { data.map(\.meta.name) }

    /// Waits (bounded) until `condition` holds; true when it did.
    @discardableResult
    func wait(seconds: Double = 10, until condition: () -> Bool) -> Bool {
      let deadline = Date().addingTimeInterval(seconds)
      while Date() < deadline {
        if condition() { return true }
        usleep(10_000)
      }
      return condition()
    }

    /// Waits until the source has its watches in place (it then opens the series).
    func ready() {
      #expect(wait { recorder.frames(of: "out").contains { $0.kind == .seriesStart } }, "the series started")
    }

    /// Drains the run and checks it ended cleanly, with the series closed.
    func stop() {
      runtime.requestStop()
      let finished = runtime.wait(timeoutNanos: 15_000_000_000)
      if !finished { runtime.abort() }
      #expect(finished, "the run drained in time")
      #expect(runtime.failures.isEmpty, "\(runtime.failures)")
      #expect(recorder.frames(of: "out").last?.kind == .seriesEnd)
    }

    var errors: Int { runtime.metrics.node("dir")!.errors.load(ordering: .relaxed) }
  }

  static func content(_ frame: Frame) -> [UInt8] { frame.parts.flatMap { Array($0.bytes) } }

  @Test func sendsFilesPresentAtStartUp() throws {
    let root = Self.scratch()
    defer { try? FileManager.default.removeItem(atPath: root) }
    Self.mkdir(root + "/sub")
    Self.write(root + "/a.bin", Self.bytes(100, seed: 1))
    Self.write(root + "/sub/b.bin", Self.bytes(200, seed: 2))
    let run = try Run("", root: root)
    #expect(run.wait { run.data.count >= 2 })
    usleep(200_000)
    run.stop()
    #expect(run.names.sorted() == ["a.bin", "sub/b.bin"])
    let frames = Dictionary(uniqueKeysWithValues: run.data.map { ($0.meta.name, $0) })
    #expect(frames["a.bin"].map(Self.content) == Self.bytes(100, seed: 1))
    #expect(frames["sub/b.bin"]?.meta.attributes["size"] == "200")
    #expect(frames["sub/b.bin"]?.meta.attributes["mtime_ns"] != nil)
    #expect(run.data.map(\.meta.frame).sorted() == [0, 1])
    #expect(run.errors == 0)
  }

  @Test func skipsFilesPresentAtStartUp() throws {
    let root = Self.scratch()
    defer { try? FileManager.default.removeItem(atPath: root) }
    Self.write(root + "/old.bin", Self.bytes(100, seed: 1))
    let run = try Run("existing: skip", root: root)
    run.ready()
    Self.write(root + "/new.bin", Self.bytes(100, seed: 2))
    #expect(run.wait { run.data.count >= 1 })
    usleep(300_000)
    run.stop()
    #expect(run.names == ["new.bin"])
  }

  @Test func sendsContentByteForByteInChunks() throws {
    let root = Self.scratch()
    defer { try? FileManager.default.removeItem(atPath: root) }
    let run = try Run("chunk_size: 4096", root: root)
    run.ready()
    let small = Self.bytes(1000, seed: 3)
    let large = Self.bytes(10_000, seed: 4)
    let exact = Self.bytes(4096, seed: 5)
    Self.write(root + "/small.bin", small)
    Self.write(root + "/large.bin", large)
    Self.write(root + "/exact.bin", exact)
    Self.write(root + "/empty.bin", [])
    #expect(run.wait { run.data.count >= 4 })
    run.stop()
    let frames = Dictionary(uniqueKeysWithValues: run.data.map { ($0.meta.name, $0) })
    #expect(frames["small.bin"]?.parts.count == 1)
    #expect(frames["small.bin"].map(Self.content) == small)
    #expect(frames["large.bin"]?.parts.map(\.count) == [4096, 4096, 1808])
    #expect(frames["large.bin"].map(Self.content) == large)
    #expect(frames["exact.bin"]?.parts.count == 1)
    #expect(frames["exact.bin"].map(Self.content) == exact)
    #expect(frames["empty.bin"]?.byteCount == 0)
    #expect(run.data.allSatisfy { $0.meta.series == 1 })
  }

  @Test func newSubdirectoriesArriveExactlyOnce() throws {
    let root = Self.scratch()
    defer { try? FileManager.default.removeItem(atPath: root) }
    let run = try Run("", root: root)
    run.ready()
    var expected: [String] = []
    for d in 0..<5 {
      Self.mkdir(root + "/d\(d)")
      Self.mkdir(root + "/d\(d)/inner")
      for f in 0..<20 {
        Self.write(root + "/d\(d)/f\(f)", Self.bytes(64, seed: f))
        Self.write(root + "/d\(d)/inner/g\(f)", Self.bytes(64, seed: f))
        expected += ["d\(d)/f\(f)", "d\(d)/inner/g\(f)"]
      }
    }
    #expect(run.wait { run.data.count >= expected.count })
    usleep(300_000)
    run.stop()
    #expect(run.names.sorted() == expected.sorted())
    #expect(Set(run.names).count == run.names.count, "no duplicates")
  }

  @Test func nonRecursiveWatchesOnlyTheTop() throws {
    let root = Self.scratch()
    defer { try? FileManager.default.removeItem(atPath: root) }
    Self.mkdir(root + "/old")
    Self.write(root + "/old/x", [1])
    let run = try Run("recursive: false", root: root)
    run.ready()
    Self.mkdir(root + "/new")
    Self.write(root + "/new/y", [2])
    Self.write(root + "/top", [3])
    #expect(run.wait { run.data.count >= 1 })
    usleep(300_000)
    run.stop()
    #expect(run.names == ["top"])
  }

  @Test func includeAndExclude() throws {
    let root = Self.scratch()
    defer { try? FileManager.default.removeItem(atPath: root) }
    let run = try Run(#"include: ["**/*.cbf"], exclude: ["tmp/**", "**/.*"]"#, root: root)
    run.ready()
    Self.mkdir(root + "/sub")
    Self.mkdir(root + "/tmp")
    for name in ["x.cbf", "sub/y.cbf", "z.txt", "tmp/w.cbf", ".hidden.cbf", "sub/.part.cbf"] {
      Self.write(root + "/" + name, [1, 2, 3])
    }
    Self.write(root + "/last.cbf", [4])
    #expect(run.wait { run.names.contains("last.cbf") })
    usleep(300_000)
    run.stop()
    #expect(run.names.sorted() == ["last.cbf", "sub/y.cbf", "x.cbf"])
  }

  @Test func settleWaitsForTheLastClose() throws {
    let root = Self.scratch()
    defer { try? FileManager.default.removeItem(atPath: root) }
    let run = try Run("settle: 600ms", root: root)
    run.ready()
    Self.write(root + "/f", Array("abc".utf8))
    usleep(300_000)
    Self.write(root + "/f", Array("def".utf8), append: true)
    let lastClose = Date()
    #expect(run.wait { run.data.count >= 1 })
    let waited = Date().timeIntervalSince(lastClose)
    #expect(waited >= 0.5, "sent \(waited) s after the last close, before the settle time")
    usleep(800_000)
    run.stop()
    #expect(run.data.count == 1)
    #expect(run.data.first.map(Self.content) == Array("abcdef".utf8))
  }

  /// A file removed before it could be sent is counted, not sent.
  @Test func vanishedFilesAreCounted() throws {
    let root = Self.scratch()
    defer { try? FileManager.default.removeItem(atPath: root) }
    let run = try Run("settle: 300ms", root: root)
    run.ready()
    Self.write(root + "/gone", [1])
    unlink(root + "/gone")
    Self.write(root + "/kept", [2])
    #expect(run.wait { run.data.count >= 1 && run.errors >= 1 })
    run.stop()
    #expect(run.names == ["kept"])
    #expect(run.errors == 1)
  }

  /// A rewrite closed again is a new version and is sent again.
  @Test func rewritesAreNewVersions() throws {
    let root = Self.scratch()
    defer { try? FileManager.default.removeItem(atPath: root) }
    let run = try Run("", root: root)
    run.ready()
    Self.write(root + "/f", [1])
    #expect(run.wait { run.data.count >= 1 })
    Self.write(root + "/f", [2, 2])
    #expect(run.wait { run.data.count >= 2 })
    usleep(200_000)
    run.stop()
    #expect(run.data.map(Self.content) == [[1], [2, 2]])
  }

  /// 20 000 files of 4 KiB, in 20 subdirectories created during the burst, with
  /// the kernel's event queue made small so that it overflows: every file
  /// arrives exactly once.
  @Test func burstWithQueueOverflow() throws {
    let root = Self.scratch()
    defer { try? FileManager.default.removeItem(atPath: root) }
    let sysctl = "/proc/sys/fs/inotify/max_queued_events"
    let saved = try? String(contentsOfFile: sysctl, encoding: .utf8)
    let lowered =
      saved != nil && (try? "256".write(toFile: sysctl, atomically: false, encoding: .utf8)) != nil
    defer {
      if lowered, let saved { try? saved.write(toFile: sysctl, atomically: false, encoding: .utf8) }
    }
    let overflowsBefore = DirectorySource.overflowsSeen.load(ordering: .relaxed)
    // The sink stalls twice during the burst: the source waits on its full edge
    // and stops reading events, and the kernel's queue (256 events) overflows.
    let run = try Run("", root: root, pauses: [100: 1.5, 10_000: 1.5])
    run.ready()
    let start = Date()
    var expected: [String] = []
    expected.reserveCapacity(20_000)
    for d in 0..<20 {
      Self.mkdir(root + "/s\(d)")
      for f in 0..<1000 {
        let name = "s\(d)/f\(f).raw"
        Self.write(root + "/" + name, Self.burstContent)
        expected.append(name)
      }
    }
    let written = Date().timeIntervalSince(start)
    #expect(run.wait(seconds: 60) { run.data.count >= expected.count })
    let arrived = Date().timeIntervalSince(start)
    usleep(300_000)
    run.stop()
    let names = run.names
    let overflows = DirectorySource.overflowsSeen.load(ordering: .relaxed) - overflowsBefore
    print(
      "burst: \(expected.count) files written in \(written) s, \(names.count) arrived after \(arrived) s, "
        + "\(names.count - Set(names).count) duplicates, \(overflows) overflows (queue lowered: \(lowered))")
    #expect(names.count == expected.count)
    #expect(Set(names) == Set(expected))
    #expect(run.data.allSatisfy { $0.byteCount == 4096 })
    #expect(run.errors == 0)
    if lowered { #expect(overflows >= 1, "the event queue overflowed at least once") }
  }

  static let burstContent = bytes(4096, seed: 42)

  /// Runs a graph (validated, no errors) with the real nodes and the `record` sink.
  static func start(_ yaml: String) throws -> Runtime {
    let result = GraphValidator(catalog: Harness.catalog).validate(text: yaml, file: "t.yaml")
    #expect(!result.diagnostics.hasErrors, "\(result.diagnostics.sorted.map(\.description))")
    let runtime = try Runtime(
      graph: try #require(result.graph), factory: RecordingFactory(recorder: Recorder()))
    runtime.start()
    return runtime
  }

  static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

  /// The cleanup rule: with `on_done: delete`, a store that cannot write (a
  /// read-only root) keeps the source files; once it can, each file is stored
  /// and only then deleted. The root is a tmpfs the test mounts read-only and
  /// later remounts read-write (needs root; CI runs as root).
  @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
  func onDoneDeleteWaitsForTheStore() throws {
    let source = Self.scratch()
    let disk = Self.scratch()
    defer {
      _ = StoreTests.mountCommand(["umount", disk])
      try? FileManager.default.removeItem(atPath: source)
      try? FileManager.default.removeItem(atPath: disk)
    }
    try #require(
      StoreTests.mountCommand(["mount", "-t", "tmpfs", "-o", "ro,size=4m", "tmpfs", disk]),
      "cannot mount a tmpfs")
    Self.mkdir(source + "/scan")
    let files = ["a.raw", "b.raw", "scan/c.raw"]
    for (index, name) in files.enumerated() {
      Self.write(source + "/" + name, Self.bytes(5000 + index, seed: index))
    }
    let runtime = try Self.start(
      """
      nodes:
        dir: {type: directory, path: "\(source)", on_done: delete}
        disk: {type: store, input: dir, root: "\(disk)", fsync: file+dir}
      """)
    defer { if !runtime.wait(timeoutNanos: 0) { runtime.abort() } }
    // Read-only: the store retries, nothing is deleted.
    #expect(!runtime.wait(timeoutNanos: 1_500_000_000))
    #expect(runtime.metrics.node("disk")!.errors.load(ordering: .relaxed) > 0, "EROFS is counted")
    for name in files { #expect(Self.exists(source + "/" + name), "\(name) is kept while unstored") }
    #expect(StoreTests.mountCommand(["mount", "-o", "remount,rw", disk]))
    // Writable: stored, then deleted.
    let deadline = Date().addingTimeInterval(15)
    while Date() < deadline, files.contains(where: { Self.exists(source + "/" + $0) }) { usleep(20_000) }
    for (index, name) in files.enumerated() {
      #expect(!Self.exists(source + "/" + name), "\(name) deleted once stored")
      let stored = FileManager.default.contents(atPath: disk + "/" + name).map { Array($0) }
      #expect(stored == Self.bytes(5000 + index, seed: index), "\(name) stored byte for byte")
    }
    runtime.requestStop()
    #expect(runtime.wait(timeoutNanos: 10_000_000_000))
    #expect(runtime.metrics.node("dir")!.errors.load(ordering: .relaxed) == 0)
  }

  /// A file that a guaranteed sink did not take (here: a checksum verification
  /// drops it) is kept and counted; a file every sink confirmed is moved below
  /// the `move:` directory with its relative path.
  @Test func onDoneMovesConfirmedFilesAndKeepsTheRest() throws {
    let source = Self.scratch()
    let target = Self.scratch()
    let stored = Self.scratch()
    defer {
      for path in [source, target, stored] { try? FileManager.default.removeItem(atPath: path) }
    }
    let runtime = try Self.start(
      """
      nodes:
        dir: {type: directory, path: "\(source)", on_done: "move:\(target)/done"}
        pick: {type: filter, input: dir, glob: ["**/*.raw"]}
        disk: {type: store, input: pick, root: "\(stored)"}
        check: {type: checksum, input: dir, mode: verify, algorithms: [md5], on_mismatch: drop}
        out: {type: record, input: check}
      """)
    defer { if !runtime.wait(timeoutNanos: 0) { runtime.abort() } }
    usleep(300_000)
    Self.mkdir(source + "/sub")
    Self.write(source + "/sub/x.raw", Self.bytes(3000, seed: 1))
    Self.write(source + "/y.txt", Self.bytes(100, seed: 2))
    // x.raw: the checksum branch drops it (no md5 to verify), so it is kept;
    // y.txt: filtered away from the store, dropped by the checksum too: kept.
    usleep(800_000)
    runtime.requestStop()
    #expect(runtime.wait(timeoutNanos: 10_000_000_000))
    #expect(Self.exists(source + "/sub/x.raw") && Self.exists(source + "/y.txt"))
    #expect(runtime.metrics.node("dir")!.errors.load(ordering: .relaxed) == 2, "two files not confirmed")
    #expect(Self.exists(stored + "/sub/x.raw"))

    // Without the verifying branch, every sink confirms: both files move.
    let again = try Self.start(
      """
      nodes:
        dir: {type: directory, path: "\(source)", on_done: "move:\(target)/done"}
        pick: {type: filter, input: dir, glob: ["**/*.raw"]}
        disk: {type: store, input: pick, root: "\(stored)", on_exists: skip-identical}
        late: {type: record, input: {from: dir, delivery: latest}}
      """)
    defer { if !again.wait(timeoutNanos: 0) { again.abort() } }
    let deadline = Date().addingTimeInterval(10)
    while Date() < deadline, Self.exists(source + "/sub/x.raw") || Self.exists(source + "/y.txt") {
      usleep(20_000)
    }
    #expect(!Self.exists(source + "/sub/x.raw") && !Self.exists(source + "/y.txt"))
    let moved = FileManager.default.contents(atPath: target + "/done/sub/x.raw").map { Array($0) }
    #expect(moved == Self.bytes(3000, seed: 1))
    #expect(Self.exists(target + "/done/y.txt"))
    again.requestStop()
    #expect(again.wait(timeoutNanos: 10_000_000_000))
    #expect(again.failures.isEmpty)
  }

  @Test func refusesToMoveIntoTheWatchedTree() throws {
    let source = Self.scratch()
    defer { try? FileManager.default.removeItem(atPath: source) }
    let runtime = try Self.start(
      """
      nodes:
        dir: {type: directory, path: "\(source)", on_done: "move:\(source)/done"}
        out: {type: record, input: dir}
      """)
    #expect(runtime.wait(timeoutNanos: 10_000_000_000))
    #expect("\(runtime.failures)".contains("inside the watched path"), "\(runtime.failures)")
  }
}

/// The `record` sink, sleeping after chosen data frames (to stall the source).
struct PausingFactory: StageFactory {
  let recorder: Recorder
  let pauses: [Int: Double]
  let real = NodeRuntime()

  var catalog: NodeCatalog? { Harness.catalog }

  var runnableTypes: Set<String> { real.runnableTypes.union(["record"]) }

  func makeBody(for node: Node, in graph: Graph) throws -> any StageBody {
    node.type == "record" ? Body(recorder: recorder, pauses: pauses) : try real.makeBody(for: node, in: graph)
  }

  struct Body: StageBody {
    let recorder: Recorder
    let pauses: [Int: Double]
    mutating func run(_ context: StageContext) throws {
      var index = 0
      while let frame = context.receive() {
        recorder.append(frame, to: context.node.name)
        guard frame.kind == .data else { continue }
        if let seconds = pauses[index] { usleep(UInt32(seconds * 1e6)) }
        index += 1
      }
    }
  }
}
