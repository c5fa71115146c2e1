import Foundation
import HidraGraph
import HidraNodes
import HidraRuntime
import Synchronization
import Testing
import ZeroMQ

/// The HiDRA Transfer API: the `hidra-transfer` forward read by a client that
/// behaves like HiDRA 4.x's `hidra.Transfer` (written from the protocol sheet,
/// in each of the four modes), fed hostile signals and requests, and read by
/// Hidra's own `hidra` source.
@Suite(.serialized) struct HidraTransferTests {
  // MARK: - A graph whose input the test feeds

  /// Frames a test hands to the `feed` source, which emits them in order.
  final class Feed: Sendable {
    private let state = Mutex<(frames: [Frame], closed: Bool)>(([], false))
    let emitted = Atomic<Int>(0)

    func push(_ frames: Frame...) { state.withLock { $0.frames += frames } }
    func close() { state.withLock { $0.closed = true } }

    func take() -> (Frame?, closed: Bool) {
      state.withLock { state in
        state.frames.isEmpty ? (nil, state.closed) : (state.frames.removeFirst(), false)
      }
    }
  }

  struct FeedBody: StageBody {
    let feed: Feed
    mutating func run(_ context: StageContext) throws {
      while true {
        let (frame, closed) = feed.take()
        if let frame {
          guard context.emit(frame) else { return }
          feed.emitted.add(1, ordering: .relaxed)
        } else if closed || context.isStopping {
          return
        } else {
          usleep(1000)
        }
      }
    }
  }

  struct Factory: StageFactory {
    let feed: Feed
    let recorder: Recorder
    let real = NodeRuntime()

    var runnableTypes: Set<String> { real.runnableTypes.union(["feed", "record"]) }

    func makeBody(for node: Node, in graph: Graph) throws -> any StageBody {
      switch node.type {
      case "feed": return FeedBody(feed: feed)
      case "record": return RecordingFactory.RecordBody(recorder: recorder, confirm: true)
      default: return try real.makeBody(for: node, in: graph)
      }
    }
  }

  static let feedSpec = NodeTypeSpec(
    name: "feed", kind: .source, summary: "frames the test hands over", options: [])
  static let catalog = NodeCatalog(NodeTypes.all + [Harness.recordSpec, feedSpec])

  /// A running graph: the feed, the forward (`out`) or the source (`in`), and `record` sinks.
  final class Run: Sendable {
    let runtime: Runtime
    let feed = Feed()
    let recorder = Recorder()

    init(_ yaml: String) throws {
      let result = GraphValidator(catalog: HidraTransferTests.catalog).validate(text: yaml, file: "test.yaml")
      #expect(!result.diagnostics.hasErrors, "\(result.diagnostics.sorted.map(\.description))")
      runtime = try Runtime(
        graph: try #require(result.graph), factory: Factory(feed: feed, recorder: recorder))
      runtime.start()
    }

    func errors(_ node: String) -> Int { runtime.metrics.node(node)?.errors.load(ordering: .relaxed) ?? -1 }
    func framesIn(_ node: String) -> Int {
      runtime.metrics.node(node)?.framesIn.load(ordering: .relaxed) ?? -1
    }

    /// Ends the feed (and stops sources), then waits; false if the run did not end within 10 s.
    func finish() -> Bool {
      feed.close()
      runtime.requestStop()
      let finished = runtime.wait(timeoutNanos: 10_000_000_000)
      if !finished { runtime.abort() }
      #expect(runtime.failures.isEmpty, "\(runtime.failures)")
      return finished
    }
  }

  /// A forward serving the Transfer API on `port` (requests on `port + 1`), fed by the test.
  static func server(port: Int, options: String = "", buffer: String = "") throws -> Run {
    let input = buffer.isEmpty ? "feed" : "{from: feed, \(buffer)}"
    return try Run(
      """
      nodes:
        feed: {type: feed}
        out: {type: forward, format: hidra-transfer, input: \(input), listen: "tcp://127.0.0.1:\(port)"\(options)}
      """)
  }

  /// A free port whose next port is free too (signals and requests).
  static func freePortPair() -> Int {
    for _ in 0..<50 {
      let port = ForwardTests.freePort()
      guard port < 65535 else { continue }
      let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
      var address = sockaddr_in()
      address.sin_family = sa_family_t(AF_INET)
      address.sin_addr.s_addr = inet_addr("127.0.0.1")
      address.sin_port = UInt16(port + 1).bigEndian
      let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
          bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
      }
      close(fd)
      if bound == 0 { return port }
    }
    return ForwardTests.freePort()
  }

  static func waitUntil(seconds: Double = 10, _ condition: () -> Bool) -> Bool {
    ZMQSourceTests.waitUntil(seconds: seconds, condition)
  }

  // MARK: - Files

  /// 1 MiB of pseudo-random bytes (xorshift), made once.
  static let noise: [UInt8] = {
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    var words = [UInt64](repeating: 0, count: (1 << 20) / 8)
    for index in words.indices {
      state ^= state << 13
      state ^= state >> 7
      state ^= state << 17
      words[index] = state
    }
    return words.withUnsafeBytes { Array($0) }
  }()

  /// Deterministic bytes, different for every seed: the noise from a seed-dependent offset, repeated.
  static func content(_ seed: UInt64, _ count: Int) -> [UInt8] {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(count)
    var offset = Int(seed &* 104_729 % UInt64(noise.count))
    while bytes.count < count {
      let take = min(count - bytes.count, noise.count - offset)
      bytes += noise[offset..<(offset + take)]
      offset = 0
    }
    return bytes
  }

  /// A data frame for a file: its bytes in parts of the given sizes (the last
  /// part takes the rest).
  static func file(
    _ name: String, _ bytes: [UInt8], parts: [Int] = [], attributes: [String: String] = [:], id: UInt64 = 1
  ) -> Frame {
    func payload(_ range: Range<Int>) -> Payload {
      Payload(count: range.count) { target in
        bytes.withUnsafeBytes { target.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[range])) }
      }
    }
    var payloads: [Payload] = []
    var offset = 0
    for size in parts where offset + size <= bytes.count {
      payloads.append(payload(offset..<(offset + size)))
      offset += size
    }
    if offset < bytes.count || payloads.isEmpty { payloads.append(payload(offset..<bytes.count)) }
    var attributes = attributes
    attributes["mtime_ns"] = attributes["mtime_ns"] ?? "1700000000500000000"
    return Frame(
      kind: .data,
      meta: FrameMeta(
        id: id, series: 1, name: name, createdNanos: 1_700_000_001_250_000_000, attributes: attributes),
      parts: payloads)
  }

  // MARK: - A Transfer API client, from the protocol sheet

  /// Sends one signal on a fresh REQ connection and waits up to `timeout` for
  /// the reply, as the Transfer API does; nil when no reply came in time.
  static func signal(_ frames: [[UInt8]], port: Int, timeout: Duration = .seconds(1)) throws -> [String]? {
    let context = try ZMQContext()
    let socket = try Socket(.req, context: context)
    try socket.setOption(.linger, 0)
    try socket.connect("tcp://127.0.0.1:\(port)")
    var message = MultipartMessage()
    for frame in frames { message.append(frame) }
    try socket.send(message)
    guard try socket.poll(.readable, timeout: timeout).contains(.readable) else { return nil }
    var reply = try socket.receiveMultipart()
    var texts: [String] = []
    while !reply.isEmpty { texts.append(reply.removeFirst().string) }
    return texts
  }

  static func signal(_ frames: [String], port: Int, timeout: Duration = .seconds(1)) throws -> [String]? {
    try signal(frames.map { Array($0.utf8) }, port: port, timeout: timeout)
  }

  /// Waits until the forward answers GET_VERSION (its stage has bound the socket).
  static func waitServing(_ port: Int) throws {
    let reply = try signal(["4.4.3", "0", "GET_VERSION", "[]"], port: port, timeout: .seconds(10))
    #expect(reply == ["GET_VERSION", "4.4.3"])
  }

  /// A JSON target list.
  static func targets(_ entries: [(String, Any, Any)]) -> String {
    let list = entries.map { [$0.0, $0.1, $0.2] as [Any] }
    let data = try! JSONSerialization.data(withJSONObject: list)
    return String(decoding: data, as: UTF8.self)
  }

  /// One file as a client's `get()` returns it.
  struct File {
    var metadata: [String: Any]
    var bytes: [UInt8]
    var chunks: Int
    var name: String {
      let relative = metadata["relative_path"] as? String ?? ""
      let filename = metadata["filename"] as? String ?? ""
      return relative.isEmpty ? filename : relative + "/" + filename
    }
  }

  /// Receives one file on `socket` as the Transfer API does: in data modes
  /// chunks are collected until the completion rule says the file is whole
  /// (a chunk shorter than `chunksize`, or `filesize / chunksize` chunks); a
  /// metadata message is a file of its own. `beforeChunk` runs before each wait
  /// for a chunk (query modes send a NEXT there). Records an issue for a chunk
  /// of another file or out of order: they must never interleave.
  static func receiveFile(
    on socket: borrowing Socket, timeout: Duration = .seconds(10), beforeChunk: () throws -> Void = {}
  ) throws -> File? {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    var partial: File?
    while true {
      try beforeChunk()
      var message: MultipartMessage?
      while message == nil {
        let left = ContinuousClock.now.duration(to: deadline)
        guard left > .zero else { return nil }
        message = try socket.tryReceiveMultipart()
        if message == nil { _ = try socket.poll(.readable, timeout: min(left, .milliseconds(50))) }
      }
      guard var received = message.take() else { return nil }
      #expect(received.count == 2, "a data message has two frames")
      guard received.count == 2 else { return nil }
      let payload = received.remove(at: 1).bytes
      let json = received.removeFirst().bytes
      let metadata = try #require(try JSONSerialization.jsonObject(with: Data(json)) as? [String: Any])
      guard let chunk = metadata["chunk_number"] as? Int else {
        return File(metadata: metadata, bytes: payload, chunks: 1)
      }
      let chunkSize = try #require(metadata["chunksize"] as? Int)
      if var file = partial {
        #expect(
          File(metadata: metadata, bytes: [], chunks: 0).name == file.name && chunk == file.chunks,
          "chunk \(chunk) of another file or out of order: files must not interleave")
        file.bytes += payload
        file.chunks += 1
        partial = file
      } else {
        #expect(chunk == 0, "a file starts with chunk 0")
        partial = File(metadata: metadata, bytes: payload, chunks: 1)
      }
      let filesize = metadata["filesize"] as? Int
      if payload.count < chunkSize
        || (filesize.map { $0 % chunkSize == 0 && $0 / chunkSize == chunk + 1 } ?? false)
      {
        return partial
      }
    }
  }

  /// The client side of `hidra.Transfer` for one target: START (then
  /// GET_VERSION, then binding its PULL socket, in that order), `get()`, STOP.
  final class TransferClient {
    let port: Int
    let mode: String
    let appid: String
    let version: String
    let dataPort: Int
    let context: ZMQContext
    let data: Socket
    let requests: Socket
    var targetList = "[]"

    init(port: Int, mode: String, appid: String = "31337", version: String = "4.4.3") throws {
      self.port = port
      self.mode = mode
      self.appid = appid
      self.version = version
      dataPort = ForwardTests.freePort()
      context = try ZMQContext()
      data = try Socket(.pull, context: context)
      try data.setOption(.linger, 0)
      requests = try Socket(.push, context: context)
      try requests.setOption(.linger, 0)
      try requests.connect("tcp://127.0.0.1:\(port + 1)")
    }

    var isQuery: Bool { mode.hasPrefix("QUERY_NEXT") }
    /// START carries the fully qualified host name; NEXT/CANCEL the host as the application wrote it.
    var announced: String { "localhost:\(dataPort)" }
    var written: String { "127.0.0.1:\(dataPort)" }

    /// START; on success GET_VERSION on a new connection and then the bind. Returns the START's reply.
    @discardableResult
    func start(pattern: Any = ".*", priority: Any = 0) throws -> [String]? {
      targetList = HidraTransferTests.targets([(announced, priority, pattern)])
      let reply = try HidraTransferTests.signal([version, appid, "START_" + mode, targetList], port: port)
      guard reply == ["START_" + mode] else { return reply }
      let version = try HidraTransferTests.signal([version, appid, "GET_VERSION", targetList], port: port)
      #expect(version == ["GET_VERSION", "4.4.3"])
      try data.bind("tcp://127.0.0.1:\(dataPort)")
      return reply
    }

    /// The client's `stop()`: only STOP_STREAM or STOP_QUERY_NEXT, also for metadata modes.
    func stop() throws -> [String]? {
      try HidraTransferTests.signal(
        [version, appid, isQuery ? "STOP_QUERY_NEXT" : "STOP_STREAM", targetList], port: port)
    }

    func request(_ command: String) throws {
      var message = MultipartMessage()
      message.append(command)
      message.append(written)
      try requests.send(message)
    }

    /// `get()`: query modes send a NEXT before every chunk they read, and CANCEL when it times out.
    func get(timeout: Duration = .seconds(10)) throws -> File? {
      let file = try HidraTransferTests.receiveFile(on: data, timeout: timeout) {
        if isQuery { try request("NEXT") }
      }
      if file == nil, isQuery { try request("CANCEL") }
      return file
    }

    /// Waits for a file without asking (no NEXT).
    func wait(timeout: Duration = .seconds(10)) throws -> File? {
      try HidraTransferTests.receiveFile(on: data, timeout: timeout)
    }
  }

  /// Checks the data-mode metadata keys HiDRA clients rely on.
  static func expectDataMetadata(
    _ file: File, name: String, size: Int, chunkSize: Int, sourcePath: String,
    sourceLocation: Testing.SourceLocation = #_sourceLocation
  ) {
    let metadata = file.metadata
    #expect(file.name == name, sourceLocation: sourceLocation)
    #expect(metadata["filesize"] as? Int == size, sourceLocation: sourceLocation)
    #expect(metadata["chunksize"] as? Int == chunkSize, sourceLocation: sourceLocation)
    #expect(metadata["version"] as? String == "4.4.3", sourceLocation: sourceLocation)
    #expect(metadata["source_path"] as? String == sourcePath, sourceLocation: sourceLocation)
    #expect(metadata["confirmation_required"] as? Bool == false, sourceLocation: sourceLocation)
    #expect(metadata["file_mod_time"] as? Double == 1_700_000_000.5, sourceLocation: sourceLocation)
    #expect(metadata["file_create_time"] as? Double == 1_700_000_001.25, sourceLocation: sourceLocation)
    #expect(metadata["max_chunks"] == nil && metadata["type"] == nil, sourceLocation: sourceLocation)
  }

  @Test("validation: a hidra-transfer forward needs a fixed TCP port below 65535")
  func validation() {
    func errors(_ listen: String) -> [String] {
      let yaml = """
        nodes:
          dir: {type: directory, path: /tmp}
          out: {type: forward, format: hidra-transfer, input: dir, listen: "\(listen)"}
        """
      let result = GraphValidator(catalog: NodeTypes.catalog).validate(text: yaml, file: "t.yaml")
      return result.diagnostics.errors.map(\.message)
    }
    #expect(errors("tcp://*:50000").isEmpty)
    for listen in ["tcp://*:*", "ipc:///tmp/hidra", "tcp://127.0.0.1:65535"] {
      #expect(errors(listen).contains { $0.contains("fixed port below 65535") }, "\(listen)")
    }
  }

  // MARK: - The four modes

  @Test(
    "STREAM: every matching file, in chunks with HiDRA's metadata; a 16 MiB file in 10 MiB chunks arrives intact"
  )
  func stream() throws {
    let port = Self.freePortPair()
    let run = try Self.server(port: port)
    try Self.waitServing(port)
    let client = try TransferClient(port: port, mode: "STREAM")
    #expect(try client.start(pattern: ".*(.bin|.dat)$") == ["START_STREAM"])

    let big = Self.content(1, 16 << 20)
    let small = Self.content(2, 1000)
    run.feed.push(
      .seriesStart(1, attributes: ["path": "/ramdisk/current"]),
      Self.file("scan_1/big.bin", big, parts: [5 << 20, 7 << 20]),
      Self.file("skipped.txt", Self.content(3, 10)),
      Self.file("empty.bin", []),
      Self.file("small.dat", small),
      .seriesEnd(1, frames: 4))

    let first = try #require(try client.get())
    #expect(first.chunks == 2, "16 MiB in chunks of 10 MiB")
    #expect(first.bytes == big, "the 16 MiB file arrives intact")
    Self.expectDataMetadata(
      first, name: "scan_1/big.bin", size: 16 << 20, chunkSize: 10 << 20, sourcePath: "/ramdisk/current")
    #expect(first.metadata["relative_path"] as? String == "scan_1")
    #expect(first.metadata["filename"] as? String == "big.bin")
    // Not a match, and an empty file (data modes send none): the next file is small.dat.
    let second = try #require(try client.get())
    #expect(second.bytes == small)
    Self.expectDataMetadata(
      second, name: "small.dat", size: 1000, chunkSize: 10 << 20, sourcePath: "/ramdisk/current")
    #expect(second.metadata["relative_path"] as? String == "")
    #expect(try client.stop() == ["STOP_STREAM"])
    #expect(try client.stop() == ["NO_OPEN_CONNECTION_FOUND"], "nothing left to stop")
    #expect(run.finish())
    #expect(run.errors("out") == 0)
  }

  @Test("STREAM_METADATA: one message per file, [metadata without chunk_number, null], empty files too")
  func streamMetadata() throws {
    let port = Self.freePortPair()
    let run = try Self.server(port: port)
    try Self.waitServing(port)
    let client = try TransferClient(port: port, mode: "STREAM_METADATA")
    #expect(try client.start() == ["START_STREAM_METADATA"])
    run.feed.push(
      .seriesStart(1, attributes: ["path": "/ramdisk/current"]),
      Self.file("a/one.cbf", Self.content(4, 5000)),
      Self.file("empty.cbf", []),
      Self.file(
        "b/two.cbf", Self.content(5, 20),
        attributes: ["stored_path": "raw/b/two.cbf", "stored_root": "/gpfs"]))
    var files: [File] = []
    for _ in 0..<3 { files.append(try #require(try client.get())) }
    #expect(files.map(\.name) == ["a/one.cbf", "empty.cbf", "raw/b/two.cbf"])
    #expect(files.map(\.bytes) == Array(repeating: Array("null".utf8), count: 3))
    #expect(files.allSatisfy { $0.metadata["chunk_number"] == nil })
    #expect(files.map { $0.metadata["filesize"] as? Int } == [5000, 0, 20])
    #expect(
      files.map { $0.metadata["source_path"] as? String } == [
        "/ramdisk/current", "/ramdisk/current", "/gpfs",
      ])
    Self.expectDataMetadata(
      files[0], name: "a/one.cbf", size: 5000, chunkSize: 10 << 20, sourcePath: "/ramdisk/current")
    // The client's stop() sends STOP_STREAM for a metadata registration too.
    #expect(try client.stop() == ["STOP_STREAM"])
    #expect(run.finish())
    #expect(run.errors("out") == 0)
  }

  /// Pushes new files (named `prefix_N`) until the client receives one; returns it and how many were pushed.
  static func pushUntilReceived(
    _ run: Run, prefix: String, size: Int, receive: () throws -> File?
  ) throws -> (File?, [String: [UInt8]]) {
    var pushed: [String: [UInt8]] = [:]
    for index in 0..<200 {
      let name = "\(prefix)_\(index).bin"
      let bytes = Self.content(UInt64(1000 + index), size)
      pushed[name] = bytes
      run.feed.push(Self.file(name, bytes))
      if let file = try receive() { return (file, pushed) }
    }
    return (nil, pushed)
  }

  /// Sends `[NEXT, "nocolon"]` after what the client sent before on its request
  /// connection and waits until the forward counted it: everything sent before
  /// on that connection has been handled.
  static func sync(_ client: TransferClient, _ run: Run) throws {
    let errors = run.errors("out")
    var message = MultipartMessage()
    message.append("NEXT")
    message.append("nocolon")
    try client.requests.send(message)
    #expect(Self.waitUntil { run.errors("out") == errors + 1 }, "the forward handled the requests")
  }

  @Test(
    "QUERY_NEXT: only new files, only when asked; NEXT per chunk leaves surplus requests that are honoured")
  func queryNext() throws {
    let port = Self.freePortPair()
    let run = try Self.server(port: port, options: ", chunk_size: 4096")
    try Self.waitServing(port)
    let client = try TransferClient(port: port, mode: "QUERY_NEXT")
    #expect(try client.start() == ["START_QUERY_NEXT"])
    // A file that arrived while nothing was asked is not sent, even when asked later.
    run.feed.push(.seriesStart(1), Self.file("old.bin", Self.content(6, 100)))
    #expect(Self.waitUntil { run.framesIn("out") == 2 })
    try client.request("NEXT")
    try Self.sync(client, run)
    let new = Self.content(7, 10_000)
    run.feed.push(Self.file("new.bin", new))
    // get() asks before every chunk it waits for: 1 + 3 requests, one used by the file.
    let got = try #require(try client.get())
    #expect(got.name == "new.bin" && got.bytes == new)
    #expect(got.chunks == 3, "10,000 bytes in chunks of 4096")
    try Self.sync(client, run)
    // Three requests are left and honoured; the fourth file is not asked for.
    let surplus = (0..<3).map { Self.content(UInt64(20 + $0), 50) }
    for (index, bytes) in surplus.enumerated() { run.feed.push(Self.file("surplus_\(index).bin", bytes)) }
    run.feed.push(Self.file("unasked.bin", [1, 2, 3]))
    for (index, bytes) in surplus.enumerated() {
      let file = try #require(try client.wait(), "surplus request \(index) was honoured")
      #expect(file.name == "surplus_\(index).bin" && file.bytes == bytes)
    }
    #expect(Self.waitUntil { run.framesIn("out") == 7 })
    let (next, sent) = try Self.pushUntilReceived(run, prefix: "asked", size: 70) {
      try client.get(timeout: .milliseconds(100))
    }
    let asked = try #require(next)
    #expect(asked.name != "unasked.bin", "a file that arrived while nothing was pending is never sent")
    #expect(sent[asked.name] == asked.bytes)
    // Counted before STOP: a NEXT the client sent while waiting may reach the
    // request socket after the signal socket handled STOP, and is then
    // (rightly) counted as a NEXT for a target no registration holds.
    #expect(run.errors("out") == 2, "only the sync requests")
    #expect(try client.stop() == ["STOP_QUERY_NEXT"])
    #expect(run.finish())
  }

  @Test("QUERY_NEXT_METADATA: metadata of the next new file when asked; CANCEL drops pending requests")
  func queryNextMetadata() throws {
    let port = Self.freePortPair()
    let run = try Self.server(port: port)
    try Self.waitServing(port)
    let client = try TransferClient(port: port, mode: "QUERY_NEXT_METADATA")
    #expect(try client.start() == ["START_QUERY_NEXT_METADATA"])
    // Requests cancelled before any file: the file that follows is not sent.
    try client.request("NEXT")
    try client.request("NEXT")
    try client.request("CANCEL")
    try Self.sync(client, run)
    run.feed.push(.seriesStart(1, attributes: ["path": "/data"]), Self.file("cancelled.bin", [9]))
    #expect(Self.waitUntil { run.framesIn("out") == 2 })
    let (file, _) = try Self.pushUntilReceived(run, prefix: "meta", size: 30) {
      try client.get(timeout: .milliseconds(100))
    }
    let got = try #require(file)
    #expect(got.name.hasPrefix("meta_"), "not cancelled.bin")
    #expect(got.bytes == Array("null".utf8))
    #expect(got.metadata["chunk_number"] == nil)
    #expect(got.metadata["filesize"] as? Int == 30)
    #expect(got.metadata["source_path"] as? String == "/data")
    #expect(
      try client.stop() == ["STOP_QUERY_NEXT"], "STOP_QUERY_NEXT removes a QUERY_NEXT_METADATA registration")
    #expect(run.finish())
  }

  // MARK: - Registrations

  @Test("several targets in one START go round-robin, a turn advancing only when its target matches")
  func roundRobin() throws {
    let port = Self.freePortPair()
    let run = try Self.server(port: port, options: ", chunk_size: 4096")
    try Self.waitServing(port)
    let (portA, portB) = (ForwardTests.freePort(), ForwardTests.freePort())
    let list = Self.targets([("localhost:\(portA)", 0, ".*"), ("localhost:\(portB)", "0", ".*\\.cbf$")])
    #expect(try Self.signal(["4.4.3", "77", "START_STREAM", list], port: port) == ["START_STREAM"])
    let context = try ZMQContext()
    let a = try Socket(.pull, context: context)
    let b = try Socket(.pull, context: context)
    try a.bind("tcp://127.0.0.1:\(portA)")
    try b.bind("tcp://127.0.0.1:\(portB)")
    // An exact multiple of the chunk size, in two parts that match the chunks (sent without a copy).
    let exact = Self.content(8, 8192)
    run.feed.push(
      Self.file("a.cbf", exact, parts: [4096]),  // A's turn, matches -> A; B's turn next
      Self.file("b.tif", [1, 2, 3]),  // B's turn, B does not match -> nobody, still B's turn
      Self.file("c.cbf", [4, 5, 6]),  // B -> A's turn
      Self.file("d.tif", [7, 8, 9]))  // A
    let a1 = try #require(try Self.receiveFile(on: a))
    #expect(a1.name == "a.cbf" && a1.bytes == exact && a1.chunks == 2)
    let b1 = try #require(try Self.receiveFile(on: b))
    #expect(b1.name == "c.cbf", "b.tif went nowhere; c.cbf is B's first file")
    let a2 = try #require(try Self.receiveFile(on: a))
    #expect(a2.name == "d.tif")
    #expect(run.finish())
  }

  @Test(
    "a START of the same appid with a superset replaces; another appid adds a group that gets every file too")
  func replaceAndAdd() throws {
    let port = Self.freePortPair()
    let run = try Self.server(port: port)
    try Self.waitServing(port)
    let (portA, portB, portC) = (ForwardTests.freePort(), ForwardTests.freePort(), ForwardTests.freePort())
    let context = try ZMQContext()
    let a = try Socket(.pull, context: context)
    let b = try Socket(.pull, context: context)
    let c = try Socket(.pull, context: context)
    try a.bind("tcp://127.0.0.1:\(portA)")
    try b.bind("tcp://127.0.0.1:\(portB)")
    try c.bind("tcp://127.0.0.1:\(portC)")
    let onlyA = Self.targets([("localhost:\(portA)", 0, ".*")])
    let both = Self.targets([("localhost:\(portA)", 0, ".*"), ("127.0.0.1:\(portB)", 0, ".*")])
    #expect(try Self.signal(["4.4.3", "1", "START_STREAM", onlyA], port: port) == ["START_STREAM"])
    #expect(try Self.signal(["4.4.3", "1", "START_STREAM", both], port: port) == ["START_STREAM"])
    let onlyC = Self.targets([("localhost:\(portC)", 0, ".*")])
    #expect(try Self.signal(["4.4.3", "2", "START_STREAM", onlyC], port: port) == ["START_STREAM"])
    run.feed.push(Self.file("x", [1]), Self.file("y", [2]), Self.file("z", [3]))
    // Replaced, not added: A and B take turns, once each; C (another appid) gets everything.
    #expect(try Self.receiveFile(on: a)?.name == "x")
    #expect(try Self.receiveFile(on: b)?.name == "y")
    #expect(try Self.receiveFile(on: a)?.name == "z", "x went to A once")
    #expect(try (0..<3).map { _ in try Self.receiveFile(on: c)?.name } == ["x", "y", "z"])
    // STOP touches only the sender's appid; FORCE_STOP everyone's.
    #expect(
      try Self.signal(["4.4.3", "2", "STOP_STREAM", onlyA], port: port) == ["NO_OPEN_CONNECTION_FOUND"])
    #expect(try Self.signal(["4.4.3", "2", "FORCE_STOP_STREAM", onlyA], port: port) == ["FORCE_STOP_STREAM"])
    #expect(try Self.signal(["4.4.3", "1", "STOP_STREAM", both], port: port) == ["STOP_STREAM"], "B is left")
    #expect(try Self.signal(["4.4.3", "2", "STOP_STREAM", onlyC], port: port) == ["STOP_STREAM"])
    #expect(
      try Self.signal(["4.4.3", "2", "STOP_STREAM", onlyC], port: port) == ["NO_OPEN_CONNECTION_FOUND"])
    #expect(run.finish())
    #expect(run.errors("out") == 0)
  }

  // MARK: - Hostile input

  @Test("malformed and hostile signals and requests get their documented replies; the server keeps serving")
  func hostileInput() throws {
    let port = Self.freePortPair()
    let run = try Self.server(
      port: port, options: ", allowed_hosts: [localhost, 127.0.0.1], metadata: false")
    try Self.waitServing(port)
    let good = Self.targets([("localhost:5000", 0, ".*")])
    let badHost = Self.targets([("10.255.255.1:5000", 0, ".*")])
    let invalid = ["NO_VALID_SIGNAL"]
    let conflict = ["VERSION_CONFLICT", "4.4.3"]
    let notFound = ["NO_OPEN_CONNECTION_FOUND"]
    // (frames, expected reply, counted as an error)
    let cases: [([[UInt8]], [String], Bool)] = [
      (["4.4.3", "1", "GET_VERSION", "[]"].utf8, ["GET_VERSION", "4.4.3"], false),
      (["", "1", "GET_VERSION", "[]"].utf8, ["GET_VERSION", "4.4.3"], false),
      (["4.0.1", "1", "GET_VERSION", "[]"].utf8, ["GET_VERSION", "4.4.3"], false),
      (["5.0.0", "1", "GET_VERSION", "[]"].utf8, conflict, true),
      (["4.4.3.dev1", "1", "START_STREAM", good].utf8, conflict, true),
      (["3", "1", "START_STREAM", good].utf8, conflict, true),
      (["4.4.3", "1", "GET_VERSION"].utf8, invalid, true),
      (["4.4.3", "1", "START_STREAM", good, "extra"].utf8, invalid, true),
      ([Array("4.4.3".utf8), [0xFF, 0xFE], Array("START_STREAM".utf8), Array(good.utf8)], invalid, true),
      (["4.4.3", "1", "START_STREAM", "[[\"localhost:5000\", 0,"].utf8, invalid, true),
      (["4.4.3", "1", "START_STREAM", "{\"a\": 1}"].utf8, invalid, true),
      (["4.4.3", "1", "START_STREAM", "[[\"localhost:5000\", 0]]"].utf8, invalid, true),
      (["4.4.3", "1", "START_STREAM", "[[\"localhost:5000\", true, \".*\"]]"].utf8, invalid, true),
      (["4.4.3", "1", "START_STREAM", Self.targets([("localhost", 0, ".*")])].utf8, invalid, true),
      (["4.4.3", "1", "START_STREAM", Self.targets([("a:b:5000", 0, ".*")])].utf8, invalid, true),
      (["4.4.3", "1", "START_STREAM", Self.targets([("localhost:5000", 0, "(")])].utf8, invalid, true),
      // Malformed beats a version conflict; a version conflict beats a host; a host beats storing.
      (["9.9.9", "1", "START_STREAM", Self.targets([("localhost:5000", 0, "[")])].utf8, invalid, true),
      (["4.4.3", "1", "START_EVERYTHING", good].utf8, invalid, true),
      (["4.4.3", "1", "HELLO", good].utf8, invalid, true),
      (["4.4.3", "1", "START_STREAM", badHost].utf8, ["NO_VALID_HOST"], true),
      (["5.1", "1", "START_STREAM", badHost].utf8, conflict, true),
      (["4.4.3", "1", "START_STREAM_METADATA", good].utf8, ["STORING_DISABLED", "4.4.3"], true),
      (["4.4.3", "1", "START_QUERY_NEXT_METADATA", badHost].utf8, ["NO_VALID_HOST"], true),
      // A STOP never gets an error reply, whatever it carries.
      (["4.4.3", "1", "STOP_STREAM", good].utf8, notFound, false),
      (["5.0.0", "1", "STOP_QUERY_NEXT", good].utf8, notFound, false),
      (["4.4.3", "1", "FORCE_STOP_STREAM", "not json"].utf8, notFound, false),
      (["4.4.3", "1", "STOP_STREAM", badHost].utf8, notFound, false),
      ([Array("4.4.3".utf8), Array("1".utf8), Array("STOP_STREAM".utf8), [0xFF]], notFound, false),
      (["4.4.3", "1", "START_STREAM", "[]"].utf8, invalid, true),
      // At most 64 targets in one signal.
      (
        ["4.4.3", "1", "START_STREAM", Self.targets((0..<65).map { ("localhost:\(6000 + $0)", 0, ".*") })]
          .utf8,
        invalid, true
      ),
    ]
    var expectedErrors = 0
    for (index, (frames, reply, counted)) in cases.enumerated() {
      #expect(try Self.signal(frames, port: port) == reply, "case \(index)")
      if counted { expectedErrors += 1 }
    }
    #expect(
      Self.waitUntil { run.errors("out") == expectedErrors },
      "\(run.errors("out")) of \(expectedErrors) errors")

    // Query requests: no reply, counted.
    let context = try ZMQContext()
    let requests = try Socket(.push, context: context)
    try requests.setOption(.linger, 1000)
    try requests.connect("tcp://127.0.0.1:\(port + 1)")
    let badRequests: [[String]] = [
      ["NEXT", "127.0.0.1:5000"],  // nobody registered it
      ["NEXT"], ["JUMP", "127.0.0.1:5000"], ["NEXT", "nocolon"], ["CANCEL", "a:b:c"], ["NEXT", "x:1", "y"],
    ]
    for parts in badRequests {
      var message = MultipartMessage()
      for part in parts { message.append(part) }
      try requests.send(message)
    }
    expectedErrors += badRequests.count
    #expect(
      Self.waitUntil { run.errors("out") == expectedErrors },
      "\(run.errors("out")) of \(expectedErrors) errors")

    // Still serving: a START with the priority as text and an old-style suffix list.
    let client = try TransferClient(port: port, mode: "STREAM")
    #expect(try client.start(pattern: [".bin"], priority: "0") == ["START_STREAM"])
    run.feed.push(Self.file("a.bin", [1, 2]), Self.file("b.txt", [3]), Self.file("c.bin", [4]))
    #expect(try client.get()?.name == "a.bin")
    #expect(try client.get()?.name == "c.bin")
    // Disallowed host in a data request does not matter; stops are echoed.
    #expect(try client.stop() == ["STOP_STREAM"])
    #expect(run.finish())
    #expect(run.errors("out") == expectedErrors)
  }

  @Test("a frame name with '..' is never sent: counted, and the next file goes out")
  func unsafeNames() throws {
    let port = Self.freePortPair()
    let run = try Self.server(port: port)
    try Self.waitServing(port)
    let client = try TransferClient(port: port, mode: "STREAM")
    #expect(try client.start() == ["START_STREAM"])
    run.feed.push(Self.file("../escape.bin", [1]), Self.file("a/../../b", [2]), Self.file("fine/ok.bin", [3]))
    #expect(try client.get()?.name == "fine/ok.bin")
    #expect(run.finish())
    #expect(run.errors("out") == 2)
  }

  // MARK: - Back-pressure and priorities

  @Test("STREAM to a target that is not reading back-pressures a guaranteed edge and loses nothing")
  func backPressure() throws {
    let port = Self.freePortPair()
    let run = try Self.server(port: port, options: ", chunk_size: 65536", buffer: "buffer: {frames: 2}")
    try Self.waitServing(port)
    let dataPort = ForwardTests.freePort()
    let list = Self.targets([("localhost:\(dataPort)", 0, ".*")])
    #expect(try Self.signal(["4.4.3", "5", "START_STREAM", list], port: port) == ["START_STREAM"])
    let count = 300
    let files = (0..<count).map { Self.content(UInt64(5000 + $0), 200_000) }
    for (index, bytes) in files.enumerated() { run.feed.push(Self.file("f\(index)", bytes)) }
    // Nobody is connected: the forward holds a bounded backlog, then the feed waits.
    #expect(Self.waitUntil { run.feed.emitted.load(ordering: .relaxed) >= 20 })
    usleep(300_000)
    let stalled = run.feed.emitted.load(ordering: .relaxed)
    #expect(stalled < count, "the feed was not held back")
    // Signals are still answered within the client's second.
    #expect(try Self.signal(["4.4.3", "5", "GET_VERSION", list], port: port) == ["GET_VERSION", "4.4.3"])
    // The client binds: every file arrives, in order, intact.
    let context = try ZMQContext()
    let data = try Socket(.pull, context: context)
    try data.bind("tcp://127.0.0.1:\(dataPort)")
    for index in 0..<count {
      let file = try #require(try Self.receiveFile(on: data), "file \(index)")
      #expect(file.name == "f\(index)")
      #expect(file.bytes == files[index], "bytes of f\(index)")
    }
    #expect(run.finish())
    #expect(run.runtime.metrics.edge(from: "feed", to: "out")?.snapshot().totalDropped == 0)
    #expect(run.errors("out") == 0)
  }

  @Test("priority > 0 never holds the input back: whole files are dropped for a full target")
  func priorityDropsWholeFiles() throws {
    let port = Self.freePortPair()
    let run = try Self.server(port: port, options: ", chunk_size: 65536", buffer: "buffer: {frames: 2}")
    try Self.waitServing(port)
    let dataPort = ForwardTests.freePort()
    let list = Self.targets([("localhost:\(dataPort)", 1, ".*")])
    #expect(try Self.signal(["4.4.3", "6", "START_STREAM", list], port: port) == ["START_STREAM"])
    let count = 300
    let files = (0..<count).map { Self.content(UInt64(7000 + $0), 200_000) }
    for (index, bytes) in files.enumerated() { run.feed.push(Self.file("f\(index)", bytes)) }
    #expect(Self.waitUntil { run.feed.emitted.load(ordering: .relaxed) == count }, "the feed was held back")
    #expect(Self.waitUntil { run.framesIn("out") == count })
    let dropped = run.errors("out")
    #expect(dropped > 0)
    let context = try ZMQContext()
    let data = try Socket(.pull, context: context)
    try data.bind("tcp://127.0.0.1:\(dataPort)")
    var received: [File] = []
    while received.count < count - dropped, let file = try Self.receiveFile(on: data, timeout: .seconds(5)) {
      received.append(file)
    }
    #expect(received.count == count - dropped, "every file not dropped arrives")
    for file in received {
      let index = try #require(Int(file.name.dropFirst()))
      #expect(file.bytes == files[index], "\(file.name) is whole")
    }
    #expect(run.finish())
  }

  // MARK: - Hidra to Hidra

  @Test(
    "the hidra source reads a hidra-transfer forward byte for byte, in both modes",
    arguments: ["stream", "query-next"])
  func hidraToHidra(_ mode: String) throws {
    let port = Self.freePortPair()
    let server = try Self.server(port: port)
    try Self.waitServing(port)
    let dataPort = ForwardTests.freePort()
    let client = try Run(
      """
      nodes:
        in: {type: hidra, signal_host: 127.0.0.1, signal_port: \(port), mode: \(mode), listen: "tcp://127.0.0.1:\(dataPort)", appid: hidra-b}
        rec: {type: record, input: in}
      """)
    func received() -> [Frame] { client.recorder.data(of: "rec") }
    /// Pushes the file until `count` files have arrived (files go only to
    /// registered targets, and in query-next only while a request is pending).
    func push(_ name: String, _ bytes: [UInt8], until count: Int) -> Bool {
      Self.waitUntil(seconds: 20) {
        server.feed.push(Self.file(name, bytes, parts: [3 << 20]))
        return Self.waitUntil(seconds: 0.3) { received().count >= count }
      }
    }
    #expect(push("warmup.bin", [42], until: 1), "the source registered and received a file")
    let before = received().count
    let sizes = [16 << 20, 0, 1, 10 << 20, 123_457]
    var sent: [String: [UInt8]] = [:]
    for (number, size) in sizes.enumerated() {
      let name = "scan_7/file_\(number).h5"
      let bytes = Self.content(UInt64(9000 + number), size)
      sent[name] = bytes
      if size == 0 {
        server.feed.push(Self.file(name, bytes))  // data modes send no empty files
      } else if mode == "stream" {
        server.feed.push(Self.file(name, bytes, parts: [3 << 20]))
      } else {
        #expect(push(name, bytes, until: before + sent.values.count { !$0.isEmpty }), "\(name) arrived")
      }
    }
    let expected = before + sent.values.count { !$0.isEmpty }
    #expect(Self.waitUntil(seconds: 20) { received().count >= expected })
    if mode == "stream" { #expect(received().count == expected, "each file once") }
    let frames = received().dropFirst(before)
    #expect(Set(frames.map(\.meta.name)) == Set(sent.filter { !$0.value.isEmpty }.keys))
    for frame in frames {
      #expect(ZMQSourceTests.bytes(frame) == sent[frame.meta.name], "\(frame.meta.name) byte for byte")
      #expect(frame.meta.attributes["mtime_ns"] == "1700000000500000000")
      #expect(frame.meta.attributes["size"] == String(sent[frame.meta.name]?.count ?? -1))
    }
    #expect(client.finish())
    #expect(client.errors("in") == 0)
    #expect(client.recorder.frames(of: "rec").last?.kind == .seriesEnd)
    // The source unregistered when it stopped: nothing is left to stop.
    let list = Self.targets([("127.0.0.1:\(dataPort)", 0, ".*")])
    let stop = mode == "stream" ? "STOP_STREAM" : "STOP_QUERY_NEXT"
    #expect(try Self.signal(["4.4.3", "hidra-b", stop, list], port: port) == ["NO_OPEN_CONNECTION_FOUND"])
    #expect(server.finish())
    #expect(server.errors("out") == 0)
  }

  // MARK: - The hidra source and bad chunks

  @Test("the hidra source counts bad chunks, loses only their files and never mixes files")
  func sourceCountsBadChunks() throws {
    let port = Self.freePortPair()
    let server = try Self.server(port: port)
    try Self.waitServing(port)
    let dataPort = ForwardTests.freePort()
    let client = try Run(
      """
      nodes:
        in: {type: hidra, signal_host: 127.0.0.1, signal_port: \(port), listen: "tcp://127.0.0.1:\(dataPort)", max_file: 64KiB}
        rec: {type: record, input: in}
      """)
    func metadata(_ name: String, chunk: Int?, chunkSize: Int = 4096, filesize: Int? = nil) -> String {
      var object: [String: Any] = [
        "source_path": "/src", "relative_path": "d", "filename": name, "chunksize": chunkSize,
        "file_mod_time": 1_700_000_000.5, "version": "4.4.3",
      ]
      if let chunk { object["chunk_number"] = chunk }
      if let filesize { object["filesize"] = filesize }
      return String(decoding: try! JSONSerialization.data(withJSONObject: object), as: UTF8.self)
    }
    let first = Self.content(11, 8292)
    let last = Self.content(12, 10)
    let messages: [[[UInt8]]] = [
      // A good file in three chunks.
      [Array(metadata("first.bin", chunk: 0, filesize: 8292).utf8), Array(first[0..<4096])],
      [Array(metadata("first.bin", chunk: 1, filesize: 8292).utf8), Array(first[4096..<8192])],
      [Array(metadata("first.bin", chunk: 2, filesize: 8292).utf8), Array(first[8192...])],
      // 1: three parts. 2: metadata that is not JSON. 3: a metadata message (no chunk_number).
      [Array(metadata("x", chunk: 0).utf8), [1], [2]],
      [Array("{not json".utf8), [1]],
      [Array(metadata("meta", chunk: nil, filesize: 3).utf8), Array("null".utf8)],
      // 4-6: two files interleaved: B0 ends A (incomplete), A1 and B1 are out of place.
      [Array(metadata("A", chunk: 0, filesize: 4106).utf8), [UInt8](repeating: 1, count: 4096)],
      [Array(metadata("B", chunk: 0, filesize: 4106).utf8), [UInt8](repeating: 2, count: 4096)],
      [Array(metadata("A", chunk: 1, filesize: 4106).utf8), [UInt8](repeating: 1, count: 10)],
      [Array(metadata("B", chunk: 1, filesize: 4106).utf8), [UInt8](repeating: 2, count: 10)],
      // 7: a chunk skipped (its later chunk is not counted again).
      [Array(metadata("C", chunk: 0, filesize: 9000).utf8), [UInt8](repeating: 3, count: 4096)],
      [Array(metadata("C", chunk: 2, filesize: 9000).utf8), [UInt8](repeating: 3, count: 808)],
      [Array(metadata("C", chunk: 1, filesize: 9000).utf8), [UInt8](repeating: 3, count: 4096)],
      // 8: a name that leaves the tree.
      [Array(metadata("../evil", chunk: 0).utf8), [6]],
      // 9: larger than max_file.
      [
        Array(metadata("big", chunk: 0, chunkSize: 32768, filesize: 100_000).utf8),
        [UInt8](repeating: 7, count: 32768),
      ],
      [
        Array(metadata("big", chunk: 1, chunkSize: 32768, filesize: 100_000).utf8),
        [UInt8](repeating: 7, count: 32768),
      ],
      [
        Array(metadata("big", chunk: 2, chunkSize: 32768, filesize: 100_000).utf8),
        [UInt8](repeating: 7, count: 32768),
      ],
      // 10: more bytes than its filesize.
      [Array(metadata("D", chunk: 0, filesize: 5000).utf8), [UInt8](repeating: 8, count: 4096)],
      [Array(metadata("D", chunk: 1, filesize: 5000).utf8), [UInt8](repeating: 8, count: 1000)],
      // A good file after all that.
      [Array(metadata("last.bin", chunk: 0, filesize: 10).utf8), last],
    ]
    let context = try ZMQContext()
    let sender = try Socket(.push, context: context)
    try sender.setOption(.linger, 2000)
    try sender.connect("tcp://127.0.0.1:\(dataPort)")
    for parts in messages {
      var message = MultipartMessage()
      for part in parts { message.append(part) }
      try sender.send(message)
    }
    #expect(Self.waitUntil { client.recorder.data(of: "rec").count == 2 })
    #expect(Self.waitUntil { client.errors("in") == 10 }, "\(client.errors("in")) errors, expected 10")
    #expect(client.finish())
    let frames = client.recorder.data(of: "rec")
    #expect(frames.map(\.meta.name) == ["d/first.bin", "d/last.bin"])
    #expect(frames.map(ZMQSourceTests.bytes) == [first, last])
    #expect(client.errors("in") == 10)
    #expect(server.finish())
  }

  @Test("a registration the datamanager refuses fails the hidra source with the reason")
  func sourceRefused() throws {
    let port = Self.freePortPair()
    let server = try Self.server(port: port)
    try Self.waitServing(port)
    let client = try Run(
      """
      nodes:
        in: {type: hidra, signal_host: 127.0.0.1, signal_port: \(port), listen: "tcp://127.0.0.1:*", version: 5.0.0}
        rec: {type: record, input: in}
      """)
    #expect(client.runtime.wait(timeoutNanos: 10_000_000_000), "the run ended by itself")
    #expect(
      client.runtime.failures.contains { $0.contains("VERSION_CONFLICT (4.4.3)") },
      "\(client.runtime.failures)")
    #expect(server.finish())
    #expect(server.errors("out") == 1)
  }
}

extension Array where Element == String {
  fileprivate var utf8: [[UInt8]] { map { [UInt8]($0.utf8) } }
}
