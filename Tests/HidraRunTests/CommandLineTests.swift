import Foundation
import Testing

/// The `hidra-run` executable, as a user runs it: exit codes, output, signals.
@Suite(.serialized) struct CommandLineTests {
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

  static var executable: URL {
    for configuration in ["debug", "release"] {
      let url = root.appendingPathComponent(".build/\(configuration)/hidra-run")
      if FileManager.default.isExecutableFile(atPath: url.path) { return url }
    }
    return root.appendingPathComponent(".build/debug/hidra-run")
  }

  struct Outcome {
    var status: Int32
    var stdout: String
    var stderr: String
  }

  /// Starts hidra-run; `during` may signal it; waits at most `timeout` seconds.
  static func run(
    _ arguments: [String], timeout: Double = 30, during: ((Process) -> Void)? = nil
  ) throws -> Outcome {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    process.currentDirectoryURL = root
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Read both pipes while the process runs, so a full pipe never blocks it.
    nonisolated(unsafe) var outData = Data()
    nonisolated(unsafe) var errData = Data()
    let readers = DispatchGroup()
    DispatchQueue.global().async(group: readers) { outData = out.fileHandleForReading.readDataToEndOfFile() }
    DispatchQueue.global().async(group: readers) { errData = err.fileHandleForReading.readDataToEndOfFile() }
    during?(process)
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(20_000) }
    if process.isRunning {
      process.terminate()
      kill(process.processIdentifier, SIGKILL)
      Issue.record("hidra-run \(arguments) did not exit within \(timeout) s")
    }
    process.waitUntilExit()
    readers.wait()
    return Outcome(
      status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
      stderr: String(decoding: errData, as: UTF8.self))
  }

  static func scratch() -> String {
    let path = NSTemporaryDirectory() + "hidra-cli-\(UUID().uuidString)"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
  }

  static func write(_ text: String, to path: String) {
    _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
  }

  static func files(below root: String) -> [String] {
    (FileManager.default.enumerator(atPath: root)?.allObjects as? [String] ?? []).filter {
      $0.hasSuffix(".bin")
    }
  }

  @Test func validateExitCodesAndFormats() throws {
    let valid = try Self.run(["validate", "graphs/demo.yaml"])
    #expect(valid.status == 0)
    #expect(valid.stdout.contains("graphs/demo.yaml: valid graph 'demo', 4 nodes, 3 edges"))

    let dir = Self.scratch()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    Self.write("nodes:\n  a: {type: generat}\n", to: dir + "/bad.yaml")
    let invalid = try Self.run(["validate", dir + "/bad.yaml"])
    #expect(invalid.status == 1)
    #expect(
      invalid.stdout.contains(
        "bad.yaml:2:13: error: unknown node type 'generat' for node 'a'; did you mean 'generate'?"))

    let json = try Self.run(["validate", "--format", "json", dir + "/bad.yaml"])
    #expect(json.status == 1)
    let parsed = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]]
    #expect(parsed?.first?["line"] as? Int == 2)
    #expect(parsed?.first?["hint"] as? String == "did you mean 'generate'?")

    #expect(try Self.run(["validate", dir + "/missing.yaml"]).status == 2)
    #expect(try Self.run(["validate", "--bogus"]).status == 2)
  }

  @Test func drawingNodesAndPlan() throws {
    let dot = try Self.run(["graph", "graphs/demo.yaml"])
    #expect(dot.status == 0 && dot.stdout.hasPrefix("digraph \"demo\""))
    let mermaid = try Self.run(["graph", "graphs/demo.yaml", "--format", "mermaid"])
    #expect(mermaid.stdout.hasPrefix("flowchart LR"))
    let nodes = try Self.run(["nodes", "store"])
    #expect(
      nodes.stdout.contains(
        "on_exists  (one of `fail`, `overwrite`, `rename`, `skip-identical`, default fail)"))
    #expect(try Self.run(["nodes", "stor"]).stderr.contains("did you mean 'store'?"))
    let plan = try Self.run(["plan", "graphs/two-hosts.yaml"])
    #expect(plan.stdout.contains("detector connects tcp://127.0.0.2:5600"))
  }

  /// The first SIGINT drains: everything the source made on a guaranteed edge is
  /// stored before hidra-run exits 0.
  @Test func firstSignalDrainsWithoutLoss() throws {
    let dir = Self.scratch()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    Self.write(
      """
      nodes:
        det: {type: generate, size: 20000, rate: 500/s}
        disk: {type: store, input: det, root: "\(dir)/raw", path: "{frame}.bin", fsync: none}
      """, to: dir + "/g.yaml")
    let outcome = try Self.run(["run", dir + "/g.yaml", "--interval", "0s"]) { process in
      usleep(1_200_000)
      kill(process.processIdentifier, SIGINT)
    }
    #expect(outcome.status == 0, "\(outcome.stderr)")
    #expect(outcome.stderr.contains("draining"))
    // The summary's 'det -> disk' row: offered == frames stored, nothing left.
    let row = try #require(outcome.stderr.split(separator: "\n").first { $0.contains("det -> disk") })
    let columns = row.split(separator: " ", omittingEmptySubsequences: true)
    let offered = Int(columns[4])!
    #expect(offered > 100)
    #expect(Self.files(below: dir + "/raw").count == offered, "every frame made was stored")
  }

  /// A second signal exits at once, and the summary says what was left.
  @Test func secondSignalAbortsAndReportsWhatWasLeft() throws {
    let dir = Self.scratch()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    Self.write("", to: dir + "/blocked")  // a file where the store's root should go: it retries forever
    Self.write(
      """
      nodes:
        det: {type: generate, size: 1000, count: 50}
        disk: {type: store, input: det, root: "\(dir)/blocked/raw"}
      """, to: dir + "/g.yaml")
    let outcome = try Self.run(["run", dir + "/g.yaml", "--interval", "0s"]) { process in
      usleep(800_000)
      kill(process.processIdentifier, SIGINT)
      usleep(300_000)
      kill(process.processIdentifier, SIGINT)
    }
    #expect(outcome.status == 3, "\(outcome.stderr)")
    #expect(outcome.stderr.contains("exiting at once"))
    // The store had taken frames it could not store: the summary says so.
    let row = try #require(outcome.stderr.split(separator: "\n").first { $0.hasPrefix("  disk ") })
    #expect(row.hasSuffix(" frames"), "the 'left' column names what the store still held: \(row)")
    let left = Int(row.split(separator: " ").dropLast().last ?? "") ?? 0
    #expect(left >= 1)
  }

  @Test func refusesToRunWhatCannotRunYet() throws {
    let outcome = try Self.run(["graphs/two-hosts.yaml"])
    #expect(outcome.status == 1)
    #expect(outcome.stderr.contains("not supported yet"), "\(outcome.stderr)")
  }
}
