import Foundation
import HidraGraph
import HidraNodes
import HidraRuntime
import Testing

@Suite struct StoreTests {
  /// A fresh directory for one test, removed afterwards by the caller.
  static func scratch() -> String {
    let path = NSTemporaryDirectory() + "hidra-store-\(UUID().uuidString)"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
  }

  static func files(below root: String) -> [String] {
    (FileManager.default.enumerator(atPath: root)?.allObjects as? [String] ?? []).filter {
      var isDirectory: ObjCBool = false
      _ = FileManager.default.fileExists(atPath: root + "/" + $0, isDirectory: &isDirectory)
      return !isDirectory.boolValue
    }.sorted()
  }

  @Test func storesEveryFrameWithItsBytes() throws {
    let root = Self.scratch()
    defer { try? FileManager.default.removeItem(atPath: root) }
    let (_, metrics) = try Harness.run(
      """
      nodes:
        det: {type: generate, size: 70000, count: 30, frames_per_series: 10, seed: 9}
        sum: {type: checksum, input: det, algorithms: [xxh3]}
        disk: {type: store, input: sum, root: "\(root)/raw", path: "{series}/{series}_{frame:06}.bin", fsync: file+dir}
      """)
    let files = Self.files(below: root + "/raw")
    #expect(files.count == 30)
    #expect(files.first == "1/1_000000.bin")
    let content = GeneratedContent(seed: 9, size: 70000)
    for file in files {
      let parts = file.split(separator: "/")[1].split(separator: "_")
      let series = Int(parts[0])!
      let frame = Int(parts[1].prefix(6))!
      let data = try Data(contentsOf: URL(fileURLWithPath: root + "/raw/" + file))
      data.withUnsafeBytes { #expect(content.verify($0, series: series, frame: frame), "\(file)") }
    }
    #expect(!files.contains { $0.contains(".tmp") }, "no temporary file is left")
    #expect(metrics.node("disk")?.errors.load(ordering: .relaxed) == 0)
  }

  @Test func refusesPathsThatLeaveTheRoot() throws {
    let root = Self.scratch()
    defer { try? FileManager.default.removeItem(atPath: root) }
    try FileManager.default.createDirectory(atPath: root + "/outside", withIntermediateDirectories: true)
    try FileManager.default.createDirectory(atPath: root + "/raw-b", withIntermediateDirectories: true)
    try FileManager.default.createSymbolicLink(
      atPath: root + "/raw-b/escape", withDestinationPath: root + "/outside")
    let (_, metrics) = try Harness.run(
      """
      nodes:
        det: {type: generate, size: 10, count: 3, attributes: {up: "../outside", link: escape, abs: /etc}}
        a: {type: store, input: det, root: "\(root)/raw", path: "{attr.up}/{frame}"}
        b: {type: store, input: det, root: "\(root)/raw-b", path: "{attr.link}/{frame}", on_exists: overwrite}
        c: {type: store, input: det, root: "\(root)/raw2", path: "{attr.abs}/{frame}"}
        ok: {type: store, input: det, root: "\(root)/raw3", path: "{frame}"}
      """)
    #expect(Self.files(below: root + "/outside").isEmpty, "nothing was written outside a root")
    for node in ["a", "b", "c"] {
      #expect(
        metrics.node(node)?.errors.load(ordering: .relaxed) == 3, "\(node): every frame refused and counted")
    }
    #expect(Self.files(below: root + "/raw3") == ["0", "1", "2"])
  }

  @Test func onExistsModes() throws {
    let root = Self.scratch()
    defer { try? FileManager.default.removeItem(atPath: root) }
    func run(_ mode: String, seed: Int) throws -> Int {
      let (_, metrics) = try Harness.run(
        """
        nodes:
          det: {type: generate, size: 100, count: 2, seed: \(seed)}
          disk: {type: store, input: det, root: "\(root)/\(mode)", path: "f{frame}.bin", on_exists: \(mode)}
        """)
      return metrics.node("disk")!.errors.load(ordering: .relaxed)
    }
    func bytes(_ path: String) -> Data { FileManager.default.contents(atPath: root + "/" + path) ?? Data() }

    #expect(try run("fail", seed: 1) == 0)
    let first = bytes("fail/f0.bin")
    #expect(try run("fail", seed: 2) == 2, "each existing target is an error")
    #expect(bytes("fail/f0.bin") == first, "and is left untouched")

    #expect(try run("overwrite", seed: 1) == 0)
    #expect(try run("overwrite", seed: 2) == 0)
    #expect(bytes("overwrite/f0.bin") != first, "replaced by the new content")

    #expect(try run("rename", seed: 1) == 0)
    #expect(try run("rename", seed: 2) == 0)
    #expect(Self.files(below: root + "/rename") == ["f0.1.bin", "f0.bin", "f1.1.bin", "f1.bin"])

    #expect(try run("skip-identical", seed: 1) == 0)
    #expect(try run("skip-identical", seed: 1) == 0, "identical content is skipped quietly")
    #expect(try run("skip-identical", seed: 2) == 2, "different content is an error")
  }

  /// A '/' followed by a combining mark is one Swift `Character` but, for the
  /// kernel, the end of a directory name like any other '/': the store splits
  /// the rendered path at the byte, creates the directory, and stores the file
  /// in it (rather than handing the kernel a "name" with a '/' inside).
  @Test func splitsTheRenderedPathAtEverySlashByte() throws {
    let root = Self.scratch()
    defer { try? FileManager.default.removeItem(atPath: root) }
    let (_, metrics) = try Harness.run(
      """
      nodes:
        det: {type: generate, size: 10, count: 2, attributes: {d: "sub/\\u0301x"}}
        disk: {type: store, input: {from: det, delivery: best-effort}, root: "\(root)/raw", path: "{attr.d}{frame}.bin"}
      """)
    #expect(metrics.node("disk")?.errors.load(ordering: .relaxed) == 0)
    #expect(Self.files(below: root + "/raw") == ["sub/\u{301}x0.bin", "sub/\u{301}x1.bin"])
    var info = stat()
    #expect(lstat(root + "/raw/sub", &info) == 0 && info.st_mode & S_IFMT == S_IFDIR, "'sub' is a directory")
  }

  /// A root that cannot be written yet is retried on a guaranteed edge, and every
  /// frame is stored once it can be: nothing is lost.
  @Test func retriesUntilTheRootBecomesWritable() throws {
    let root = Self.scratch()
    defer { try? FileManager.default.removeItem(atPath: root) }
    // A regular file where the root's parent should be: mkdir fails (ENOTDIR),
    // even for root, which file permissions would not stop.
    _ = FileManager.default.createFile(atPath: root + "/blocked", contents: Data())
    let result = GraphValidator(catalog: Harness.catalog).validate(
      text: """
        nodes:
          det: {type: generate, size: 1000, count: 20}
          disk: {type: store, input: det, root: "\(root)/blocked/raw", path: "{frame}"}
        """, file: "t.yaml")
    let runtime = try Runtime(graph: try #require(result.graph), factory: NodeRuntime())
    runtime.start()
    #expect(!runtime.wait(timeoutNanos: 400_000_000), "still retrying while the root cannot be made")
    #expect(runtime.metrics.node("disk")!.errors.load(ordering: .relaxed) > 0, "the failures are counted")
    try FileManager.default.removeItem(atPath: root + "/blocked")
    #expect(runtime.wait(timeoutNanos: 20_000_000_000))
    #expect(Self.files(below: root + "/blocked/raw").count == 20)
  }

  /// Runs `mount`/`umount`; true when it worked.
  static func mountCommand(_ arguments: [String]) -> Bool {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: arguments[0] == "umount" ? "/bin/umount" : "/bin/mount")
    process.arguments = Array(arguments.dropFirst())
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return false }
    process.waitUntilExit()
    return process.terminationStatus == 0
  }

  /// A full disk on a guaranteed edge loses nothing: the store retries, leaves no
  /// partial file, and stores everything once there is room. The disk is a 1 MiB
  /// tmpfs the test mounts (it needs root; CI runs as root).
  @Test(.enabled(if: getuid() == 0, "mounting a small tmpfs needs root"))
  func fullDiskIsRetriedWithoutLoss() throws {
    let root = Self.scratch()
    defer { try? FileManager.default.removeItem(atPath: root) }
    let disk = root + "/disk"
    try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: true)
    try #require(
      Self.mountCommand(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", disk]), "cannot mount a tmpfs")
    defer { _ = Self.mountCommand(["umount", disk]) }
    let result = GraphValidator(catalog: Harness.catalog).validate(
      text: """
        nodes:
          det: {type: generate, size: 200000, count: 20, seed: 5}
          store: {type: store, input: det, root: "\(disk)/raw", path: "{frame}.bin"}
        """, file: "t.yaml")
    let runtime = try Runtime(graph: try #require(result.graph), factory: NodeRuntime())
    runtime.start()
    #expect(!runtime.wait(timeoutNanos: 600_000_000), "still retrying while the disk is full")
    let errors = runtime.metrics.node("store")!.errors.load(ordering: .relaxed)
    #expect(errors > 0, "ENOSPC is counted")
    let stored = Self.files(below: disk + "/raw")
    #expect(stored.count < 20 && stored.count >= 3, "some fit, not all: \(stored.count)")
    #expect(!stored.contains { $0.contains(".tmp") }, "no partial file is left behind")
    #expect(Self.mountCommand(["mount", "-o", "remount,size=16m", disk]))
    #expect(runtime.wait(timeoutNanos: 20_000_000_000))
    let files = Self.files(below: disk + "/raw")
    #expect(files.count == 20)
    let content = GeneratedContent(seed: 5, size: 200000)
    for file in files {
      let frame = Int(file.split(separator: ".")[0])!
      let data = try Data(contentsOf: URL(fileURLWithPath: disk + "/raw/" + file))
      data.withUnsafeBytes { #expect(content.verify($0, series: 1, frame: frame), "\(file)") }
    }
  }
}

extension StoreTests {
  /// A node reading from a store gets each frame once it is stored, with its
  /// path, so a forward can announce stored files.
  @Test func passesStoredFramesOnWithTheirPath() throws {
    let root = Self.scratch()
    defer { try? FileManager.default.removeItem(atPath: root) }
    let (recorder, _) = try Harness.run(
      """
      nodes:
        det: {type: generate, size: 500, count: 6, frames_per_series: 3, seed: 1}
        disk: {type: store, input: det, root: "\(root)", path: "s{series}/{frame:03}.bin"}
        after: {type: record, input: disk}
      """)
    let frames = recorder.frames(of: "after")
    #expect(frames.count(where: { $0.kind == .seriesStart }) == 2)
    let data = frames.filter { $0.kind == .data }
    #expect(data.count == 6)
    for frame in data {
      let path = try #require(frame.meta.attributes["stored_path"])
      #expect(
        path
          == "s\(frame.meta.series)/\(String(repeating: "0", count: 3 - String(frame.meta.frame).count))\(frame.meta.frame).bin"
      )
      #expect(frame.meta.attributes["stored_root"] == root)
      let stored = FileManager.default.contents(atPath: root + "/" + path).map { Array($0) }
      #expect(stored == frame.parts.flatMap { Array($0.bytes) }, "on disk when it arrives")
    }
  }
}
