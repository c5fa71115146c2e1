import Foundation
import HidraGraph
import HidraRuntime
import Synchronization
import Testing

@testable import HidraNodes

/// The `eiger-filewriter` source against `FakeSimplon`: every file once and byte
/// for byte, large files in chunk-sized parts, files that come back, deletion
/// only after confirmation, and HTTP failures counted and retried.
@Suite struct EigerFileWriterTests {
  typealias Run = ZMQSourceTests.Run

  static func graph(_ server: FakeSimplon, _ options: String = "", sinks: String? = nil) -> String {
    """
    nodes:
      fw: {type: eiger-filewriter, url: "\(server.url)", poll: 20ms\(options)}
    \(sinks ?? "  rec: {type: record, input: fw}")
    """
  }

  static func waitUntil(_ condition: () -> Bool) -> Bool { ZMQSourceTests.waitUntil(seconds: 20, condition) }

  static func data(_ run: Run, _ node: String = "rec") -> [Frame] { run.recorder.data(of: node) }

  @Test func sendsEveryFileOnceByteForByteInChunks() throws {
    let server = try FakeSimplon()
    defer { server.stop() }
    let master = FakeSimplon.content(1, size: 1000)
    let big = FakeSimplon.content(2, size: 3 << 20 + 123)  // larger than chunk_size: 4 parts
    server.add("series_1_master.h5", master)
    server.add("series_1_data_000001.h5", big)
    server.add("notes.txt", FakeSimplon.content(3, size: 10))
    let run = try Run(Self.graph(server, ", chunk_size: 1MiB, include: [\"*.h5\"]"))
    #expect(Self.waitUntil { Self.data(run).count == 2 })

    // A new file; then the old files gone and back: the same version is not sent
    // again, a changed one is.
    let later = FakeSimplon.content(4, size: 5000)
    server.add("series_2_master.h5", later)
    #expect(Self.waitUntil { Self.data(run).count == 3 })
    server.remove("series_1_master.h5")
    server.remove("series_1_data_000001.h5")
    let seen = server.listings
    #expect(Self.waitUntil { server.listings >= seen + 3 })
    server.add("series_1_master.h5", master)
    let rewritten = FakeSimplon.content(5, size: 2 << 20)
    server.add("series_1_data_000001.h5", rewritten, modified: "Mon, 24 Nov 2025 11:00:00 GMT")
    #expect(Self.waitUntil { Self.data(run).count == 4 })
    let settled = server.listings
    #expect(Self.waitUntil { server.listings >= settled + 5 })
    #expect(run.stop())
    #expect(run.runtime.failures.isEmpty, "\(run.runtime.failures)")
    #expect(run.errors("fw") == 0)

    let frames = run.recorder.frames(of: "rec")
    #expect(frames.first?.kind == .seriesStart && frames.first?.meta.attributes["url"] == server.url)
    #expect(frames.last?.kind == .seriesEnd && frames.last?.meta.attributes["frames"] == "4")
    let data = Self.data(run)
    #expect(
      data.map(\.meta.name) == [
        "series_1_master.h5", "series_1_data_000001.h5", "series_2_master.h5", "series_1_data_000001.h5",
      ])
    #expect(data.map(\.meta.frame) == [0, 1, 2, 3])
    for (frame, bytes) in zip(data, [master, big, later, rewritten]) {
      #expect(ZMQSourceTests.bytes(frame) == bytes, "\(frame.meta.name) byte for byte")
      #expect(frame.parts.count == (bytes.count + (1 << 20) - 1) >> 20, "one part per MiB")
      #expect(frame.parts.allSatisfy { $0.count <= 1 << 20 })
      #expect(frame.meta.attributes["size"] == String(bytes.count))
      #expect(frame.meta.contentType == "application/x-hdf5" && frame.meta.series == 1)
    }
    #expect(data[3].meta.attributes["last_modified"] == "Mon, 24 Nov 2025 11:00:00 GMT")
    #expect(server.count("GET /data/notes.txt") == 0, "include filters before downloading")
    #expect(
      server.count("GET /data/series_1_master.h5") == 1, "an unchanged file that came back is not sent again")
    #expect(server.deleted.isEmpty)
  }

  @Test func readsAWrappedListAndSkipsUnsafeNames() throws {
    let server = try FakeSimplon()
    defer { server.stop() }
    server.state.withLock { $0.wrappedList = true }
    server.add("../escape.h5", [1])
    server.add("a//b.h5", [2])
    server.add("sub dir/series 1.h5", FakeSimplon.content(6, size: 300))
    let run = try Run(Self.graph(server))
    #expect(Self.waitUntil { Self.data(run).count == 1 })
    let seen = server.listings
    #expect(Self.waitUntil { server.listings >= seen + 3 })
    #expect(run.stop())
    #expect(
      Self.data(run).map(\.meta.name) == ["sub dir/series 1.h5"], "a path below /data/, percent-encoded")
    #expect(ZMQSourceTests.bytes(Self.data(run)[0]) == FakeSimplon.content(6, size: 300))
    #expect(run.errors("fw") == 2, "each unsafe name is counted once")
    #expect(!server.requests.contains { $0.contains("escape") || $0.contains("a//b") })
  }

  // MARK: - Deleting

  @Test func deletesOnlyAfterEveryGuaranteedSinkConfirmed() throws {
    let server = try FakeSimplon()
    defer { server.stop() }
    let recorded = Mutex<Recorder?>(nil)
    let early = Mutex<[String]>([])
    // At each DELETE, both sinks must already hold the file.
    server.state.withLock {
      $0.onDelete = { name in
        let kept = recorded.withLock { recorder in
          ["rec", "other"].allSatisfy { sink in
            recorder?.data(of: sink).contains { $0.meta.name == name } ?? false
          }
        }
        if !kept { early.withLock { $0.append(name) } }
      }
    }
    let names = (0..<4).map { "series_7_data_00000\($0).h5" }
    for (index, name) in names.enumerated() { server.add(name, FakeSimplon.content(index, size: 20_000)) }
    let run = try Run(
      Self.graph(
        server, ", delete: true, chunk_size: 8KiB",
        sinks: """
            rec: {type: record, input: fw}
            other: {type: record, input: fw}
            preview: {type: record, input: {from: fw, delivery: best-effort}, confirm: false}
          """))
    recorded.withLock { $0 = run.recorder }
    #expect(Self.waitUntil { server.deleted.count == 4 })
    #expect(run.stop())
    #expect(run.runtime.failures.isEmpty, "\(run.runtime.failures)")
    #expect(Set(server.deleted) == Set(names))
    #expect(early.withLock { $0 }.isEmpty, "deleted before every sink had it: \(early.withLock { $0 })")
    #expect(run.errors("fw") == 0, "a best-effort sink neither confirms nor holds anything up")
    #expect(Self.data(run).count == 4, "each file once, though it was listed until deleted")
  }

  @Test func keepsFilesThatASinkDidNotConfirm() throws {
    let server = try FakeSimplon()
    defer { server.stop() }
    server.add("a.h5", FakeSimplon.content(1, size: 100))
    server.add("b.h5", FakeSimplon.content(2, size: 100))
    let run = try Run(
      Self.graph(
        server, ", delete: true",
        sinks: """
            rec: {type: record, input: fw}
            lazy: {type: record, input: fw, confirm: false}
          """))
    #expect(Self.waitUntil { run.errors("fw") == 2 })
    let seen = server.listings
    #expect(Self.waitUntil { server.listings >= seen + 3 })
    #expect(run.stop())
    #expect(server.deleted.isEmpty)
    #expect(server.state.withLock { $0.requests.allSatisfy { !$0.hasPrefix("DELETE") } })
    #expect(Self.data(run, "lazy").count == 2 && Self.data(run).count == 2)
  }

  @Test func deletesOnceTheStoreHasTheFile() throws {
    let server = try FakeSimplon()
    defer { server.stop() }
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "hidra-fw-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: directory) }
    let files = [
      "series_4_master.h5": FakeSimplon.content(1, size: 3000),
      "sub/series_4_data_000001.h5": FakeSimplon.content(2, size: 70_000),
    ]
    for (name, bytes) in files { server.add(name, bytes) }
    let early = Mutex<[String]>([])
    server.state.withLock {
      $0.onDelete = { name in
        let stored = try? Data(contentsOf: directory.appendingPathComponent("raw/" + name))
        if stored.map(Array.init) != files[name] { early.withLock { $0.append(name) } }
      }
    }
    let run = try Run(
      Self.graph(
        server, ", delete: true, chunk_size: 16KiB",
        sinks: "  disk: {type: store, input: fw, root: \"\(directory.path)/raw\"}"))
    #expect(Self.waitUntil { server.deleted.count == 2 })
    #expect(run.stop())
    #expect(run.runtime.failures.isEmpty, "\(run.runtime.failures)")
    #expect(run.errors("fw") == 0 && run.errors("disk") == 0)
    #expect(Set(server.deleted) == Set(files.keys))
    #expect(early.withLock { $0 }.isEmpty, "deleted before it was stored: \(early.withLock { $0 })")
  }

  @Test func aStoreThatCannotWriteKeepsFilesOnTheDetector() throws {
    let server = try FakeSimplon()
    defer { server.stop() }
    server.add("series_3_master.h5", FakeSimplon.content(9, size: 4096))
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "hidra-fw-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    // The store's root lies below a regular file: not writable, even for root.
    let blocker = directory.appendingPathComponent("not-a-directory")
    try Data("x".utf8).write(to: blocker)
    let run = try Run(
      Self.graph(
        server, ", delete: true",
        sinks: "  disk: {type: store, input: fw, root: \"\(blocker.path)/raw\", path: \"{name}\"}"))
    #expect(Self.waitUntil { server.count("GET /data/series_3_master.h5") == 1 && run.errors("disk") >= 2 })
    // The store retries for good on its guaranteed edge: drain for a moment, then abort.
    run.runtime.requestStop()
    #expect(!run.runtime.wait(timeoutNanos: 500_000_000), "the source waits for the store's verdict")
    run.runtime.abort()
    #expect(run.runtime.wait(timeoutNanos: 5_000_000_000))
    #expect(server.deleted.isEmpty, "never deleted: the store never confirmed")
    #expect(server.requests.allSatisfy { !$0.hasPrefix("DELETE") })
  }

  // MARK: - Failures

  @Test func httpFailuresAreCountedAndRetried() throws {
    let server = try FakeSimplon()
    defer { server.stop() }
    let a = FakeSimplon.content(11, size: 300_000)
    let b = FakeSimplon.content(12, size: 200_000)
    server.add("a.h5", a)
    server.add("b.h5", b)
    server.state.withLock { state in
      state.failures["GET /filewriter/api/1.8.0/files"] = [500]
      state.garbageListings = 1
      state.failures["GET /data/a.h5"] = [503]
      state.truncate = ["b.h5"]
    }
    let run = try Run(Self.graph(server, ", chunk_size: 64KiB"))
    #expect(Self.waitUntil { Self.data(run).count == 2 })
    let seen = server.listings
    #expect(Self.waitUntil { server.listings >= seen + 3 })
    #expect(run.stop())
    #expect(run.runtime.failures.isEmpty, "\(run.runtime.failures)")
    #expect(run.errors("fw") == 4, "a failed listing, a bad listing, a failed and a truncated download")
    let data = Self.data(run)
    #expect(Set(data.map(\.meta.name)) == ["a.h5", "b.h5"], "each sent once, after its retry")
    for frame in data {
      #expect(ZMQSourceTests.bytes(frame) == (frame.meta.name == "a.h5" ? a : b))
    }
  }

  @Test func aDetectorThatRefusesConnectionsIsCountedAndStopIsPrompt() throws {
    let port = ForwardTests.freePort()
    let run = try Run(
      """
      nodes:
        fw: {type: eiger-filewriter, url: "http://127.0.0.1:\(port)", poll: 20ms}
        rec: {type: record, input: fw}
      """)
    #expect(Self.waitUntil { run.errors("fw") >= 1 })
    // The next listing is waiting for its connection: stopping cancels it.
    #expect(run.stop(), "stops within 5 s")
    #expect(run.runtime.failures.isEmpty)
    #expect(run.recorder.frames(of: "rec").map(\.kind) == [.seriesStart, .seriesEnd])
  }
}
