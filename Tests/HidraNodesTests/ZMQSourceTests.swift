import Foundation
import HidraGraph
import HidraNodes
import HidraRuntime
import Synchronization
import Testing
import ZeroMQ

/// The `zmq` source: fed by a real forward, by malformed messages from a raw
/// ZeroMQ socket, and stopped with nothing to read.
@Suite struct ZMQSourceTests {
  /// A graph, started with the test `record` sink available.
  final class Run: Sendable {
    let runtime: Runtime
    let recorder = Recorder()

    init(_ yaml: String) throws {
      let result = GraphValidator(catalog: Harness.catalog).validate(text: yaml, file: "test.yaml")
      #expect(!result.diagnostics.hasErrors, "\(result.diagnostics.sorted.map(\.description))")
      runtime = try Runtime(graph: try #require(result.graph), factory: RecordingFactory(recorder: recorder))
      runtime.start()
    }

    func errors(_ node: String) -> Int { runtime.metrics.node(node)?.errors.load(ordering: .relaxed) ?? -1 }

    /// Stops (drains) and waits; false if the run did not end within 5 s (then it is aborted).
    func stop() -> Bool {
      runtime.requestStop()
      let finished = runtime.wait(timeoutNanos: 5_000_000_000)
      if !finished { runtime.abort() }
      return finished
    }
  }

  /// Waits until `condition` holds, at most `seconds`; returns whether it held.
  static func waitUntil(seconds: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while !condition() {
      if Date() >= deadline { return false }
      Thread.sleep(forTimeInterval: 0.005)
    }
    return true
  }

  /// The bytes of a payload's parts, concatenated.
  static func bytes(_ frame: Frame) -> [UInt8] { frame.parts.flatMap { Array($0.bytes) } }

  // MARK: - A forward feeding a zmq source

  struct Chain: Sendable, CustomTestStringConvertible {
    var size: Int
    var chunkSize: Int
    /// The zmq source binds and the forward connects (otherwise the reverse).
    var sourceListens: Bool
    var testDescription: String {
      "\(size) B frames, chunk_size \(chunkSize), " + (sourceListens ? "source listens" : "forward listens")
    }
  }

  @Test(arguments: [
    Chain(size: 10_000, chunkSize: 4096, sourceListens: false),
    Chain(size: 3_000, chunkSize: 4096, sourceListens: false),
    Chain(size: 1 << 20, chunkSize: 65_536, sourceListens: true),
    Chain(size: 10_000, chunkSize: 4096, sourceListens: true),
  ])
  func forwardToSourceDeliversEveryFrameIntact(_ chain: Chain) throws {
    let port = ForwardTests.freePort()
    let address = "\"tcp://127.0.0.1:\(port)\""
    let receiver = try Run(
      """
      nodes:
        in: {type: zmq, \(chain.sourceListens ? "listen" : "connect"): \(address)}
        rec: {type: record, input: in}
      """)
    // The sender records what it forwards, to compare frame by frame.
    let sender = try Run(
      """
      nodes:
        det: {type: generate, size: \(chain.size), count: 12, frames_per_series: 5, seed: 7}
        sum: {type: checksum, input: det, algorithms: [xxh3, sha256]}
        out: {type: forward, input: sum, \(chain.sourceListens ? "connect" : "listen"): \(address), chunk_size: \(chain.chunkSize)}
        sent: {type: record, input: sum}
      """)
    #expect(sender.runtime.wait(timeoutNanos: 30_000_000_000), "the sender did not finish in 30 s")
    #expect(sender.runtime.failures.isEmpty, "\(sender.runtime.failures)")
    let sent = sender.recorder.frames(of: "sent")
    #expect(sent.count == 12 + 3 * 2)
    let arrived = Self.waitUntil(seconds: 20) { receiver.recorder.frames(of: "rec").count >= sent.count }
    #expect(arrived, "\(receiver.recorder.frames(of: "rec").count) of \(sent.count) frames arrived")
    #expect(receiver.stop(), "the source did not stop")
    #expect(receiver.runtime.failures.isEmpty, "\(receiver.runtime.failures)")
    #expect(receiver.errors("in") == 0)

    let received = receiver.recorder.frames(of: "rec")
    #expect(received.count == sent.count)
    let content = GeneratedContent(seed: 7, size: chain.size)
    let chunks = (chain.size + chain.chunkSize - 1) / chain.chunkSize
    for (original, frame) in zip(sent, received) {
      #expect(frame.kind == original.kind)
      #expect(frame.meta == original.meta, "metadata of frame \(original.meta.id)")
      #expect(frame.byteCount == original.byteCount)
      let bytes = Self.bytes(frame)
      #expect(bytes == Self.bytes(original), "bytes of frame \(original.meta.id)")
      guard frame.kind == .data else { continue }
      #expect(frame.parts.count == chunks, "a chunk per payload part, none concatenated")
      bytes.withUnsafeBytes {
        #expect(content.verify($0, series: frame.meta.series, frame: frame.meta.frame))
      }
      #expect(frame.meta.checksums["xxh3"] == ChecksumNode.Digest.hex("xxh3", frame.parts))
      #expect(frame.meta.checksums["sha256"] == ChecksumNode.Digest.hex("sha256", frame.parts))
    }
    #expect(received.map(\.kind).filter { $0 == .data }.count == 12)
    #expect(received.first?.kind == .seriesStart && received.last?.kind == .seriesEnd)
  }

  @Test func subscriberSourceReadsAPublishingForward() throws {
    let port = ForwardTests.freePort()
    let receiver = try Run(
      """
      nodes:
        in: {type: zmq, pattern: sub, connect: "tcp://127.0.0.1:\(port)"}
        rec: {type: record, input: in}
      """)
    let sender = try Run(
      """
      nodes:
        det: {type: generate, size: 2000, rate: 100/s, duration: 2s, seed: 5}
        out: {type: forward, input: {from: det, delivery: latest}, pattern: pub, listen: "tcp://127.0.0.1:\(port)"}
      """)
    let arrived = Self.waitUntil(seconds: 10) { receiver.recorder.data(of: "rec").count >= 20 }
    #expect(arrived, "a subscriber gets the stream")
    #expect(sender.runtime.wait(timeoutNanos: 20_000_000_000))
    #expect(receiver.stop())
    #expect(receiver.errors("in") == 0)
    let content = GeneratedContent(seed: 5, size: 2000)
    for frame in receiver.recorder.data(of: "rec") {
      Self.bytes(frame).withUnsafeBytes {
        #expect(content.verify($0, series: frame.meta.series, frame: frame.meta.frame))
      }
    }
  }

  // MARK: - Malformed input

  /// One message: its parts.
  typealias Message = [[UInt8]]

  /// A named group of messages, the errors the source must count for them, and
  /// the frames (by id) that must arrive from them.
  struct Case {
    var name: String
    var messages: [Message]
    var errors: Int
    var arrives: [UInt64] = []
  }

  /// A header as JSON text; `fields` go after the version, kind, id and size.
  static func header(
    id: UInt64, size: Int, kind: String = "data", chunk: (index: Int, count: Int, offset: Int)? = nil,
    fields: String = ""
  ) -> [UInt8] {
    var json = "{\"hidra\":1,\"kind\":\"\(kind)\",\"id\":\(id),\"series\":4,\"frame\":\(id),"
    json += "\"name\":\"frame_\(id).raw\",\"size\":\(size)\(fields)"
    if let chunk {
      json += ",\"chunk\":{\"index\":\(chunk.index),\"count\":\(chunk.count),\"offset\":\(chunk.offset)}"
    }
    return Array((json + "}").utf8)
  }

  /// Deterministic content of frame `id`.
  static func content(_ id: UInt64, _ size: Int) -> [UInt8] {
    (0..<size).map { UInt8(truncatingIfNeeded: Int(id) &* 31 &+ $0 &* 7 &+ $0 >> 8) }
  }

  /// A valid unchunked frame.
  static func frame(_ id: UInt64, size: Int = 100) -> Message {
    [header(id: id, size: size), content(id, size)]
  }

  /// The chunk messages of a valid frame of `size` bytes, `chunkSize` each.
  static func chunks(_ id: UInt64, size: Int, chunkSize: Int) -> [Message] {
    let bytes = content(id, size)
    let count = (size + chunkSize - 1) / chunkSize
    return (0..<count).map { index in
      let offset = index * chunkSize
      return [
        header(id: id, size: size, chunk: (index, count, offset)),
        Array(bytes[offset..<min(size, offset + chunkSize)]),
      ]
    }
  }

  struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
      state &+= 0x9E37_79B9_7F4A_7C15
      var z = state
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      return z ^ (z >> 31)
    }
    mutating func next(below bound: Int) -> Int { Int(next() % UInt64(bound)) }
  }

  static func decodes(_ bytes: [UInt8]) -> Bool {
    (try? bytes.withUnsafeBytes { try Wire.decodeHeader($0) }) != nil
  }

  /// Every case sends only messages the source sees (each part is below its
  /// max_message of 128 KiB); the one ZeroMQ drops is sent separately.
  static func corpus() -> [Case] {
    func text(_ string: String) -> [UInt8] { Array(string.utf8) }
    let payload: [UInt8] = Array(repeating: 7, count: 10)
    let c = 50  // chunk size of the chunked cases
    var cases = [
      Case(name: "not JSON", messages: [[text("hello"), payload]], errors: 1),
      Case(name: "JSON array", messages: [[text("[1,2,3]"), payload]], errors: 1),
      Case(name: "JSON string", messages: [[text("\"hidra\"")]], errors: 1),
      Case(
        name: "wrong version", messages: [[text("{\"hidra\":2,\"kind\":\"data\",\"size\":0}")]], errors: 1),
      Case(name: "missing version", messages: [[text("{\"kind\":\"data\",\"size\":0}")]], errors: 1),
      Case(
        name: "version as text", messages: [[text("{\"hidra\":\"1\",\"kind\":\"data\",\"size\":0}")]],
        errors: 1),
      Case(name: "missing kind", messages: [[text("{\"hidra\":1,\"size\":10}"), payload]], errors: 1),
      Case(name: "unknown kind", messages: [[header(id: 1, size: 10, kind: "image"), payload]], errors: 1),
      Case(name: "negative size", messages: [[header(id: 1, size: -10), payload]], errors: 1),
      Case(name: "missing size", messages: [[text("{\"hidra\":1,\"kind\":\"data\"}"), payload]], errors: 1),
      Case(
        name: "size above Int64",
        messages: [[text("{\"hidra\":1,\"kind\":\"data\",\"size\":99999999999999999999999}"), payload]],
        errors: 1),
      Case(
        name: "negative id",
        messages: [[text("{\"hidra\":1,\"kind\":\"data\",\"id\":-1,\"size\":10}"), payload]], errors: 1),
      Case(
        name: "checksum not a string",
        messages: [[header(id: 1, size: 10, fields: ",\"checksums\":{\"xxh3\":5}"), payload]], errors: 1),
      Case(
        name: "shape not sizes",
        messages: [[header(id: 1, size: 10, fields: ",\"shape\":[-1,2]"), payload]], errors: 1),
      Case(
        name: "NUL in name",
        messages: [[text("{\"hidra\":1,\"kind\":\"data\",\"name\":\"a\\u0000b\",\"size\":10}"), payload]],
        errors: 1),
      Case(name: "size mismatch: bytes missing", messages: [[header(id: 1, size: 11), payload]], errors: 1),
      Case(name: "size mismatch: extra bytes", messages: [[header(id: 1, size: 9), payload]], errors: 1),
      Case(
        name: "size mismatch over several parts", messages: [[header(id: 1, size: 25), payload, payload]],
        errors: 1),
      Case(
        name: "header above 64 KiB",
        messages: [
          [
            header(
              id: 1, size: 10, fields: ",\"attributes\":{\"a\":\"\(String(repeating: "x", count: 70_000))\"}"),
            payload,
          ]
        ],
        errors: 1),
      Case(name: "empty message parts", messages: [[[], [], []]], errors: 1),
      Case(name: "payload without header (one empty part)", messages: [[[]]], errors: 1),
      Case(
        name: "header with empty parts but size 10", messages: [[header(id: 1, size: 10), [], []]], errors: 1),
      Case(
        name: "chunk with index >= count", messages: [[header(id: 1, size: 10, chunk: (3, 3, 0)), payload]],
        errors: 1),
      Case(
        name: "chunk with count 0", messages: [[header(id: 1, size: 10, chunk: (0, 0, 0)), payload]],
        errors: 1),
      Case(
        name: "chunk with negative offset",
        messages: [[header(id: 1, size: 10, chunk: (0, 1, -1)), payload]], errors: 1),
      Case(
        name: "chunk not an object",
        messages: [[header(id: 1, size: 10, fields: ",\"chunk\":[0,1,0]"), payload]], errors: 1),
      Case(
        name: "size as a fraction",
        messages: [[text("{\"hidra\":1,\"kind\":\"data\",\"size\":10.5}"), payload]],
        errors: 1),
      Case(
        name: "deeply nested arrays",
        messages: [[text(String(repeating: "[", count: 30_000) + String(repeating: "]", count: 30_000))]],
        errors: 1),
      Case(
        name: "deeply nested objects in an attribute",
        messages: [
          [
            header(
              id: 1, size: 0,
              fields: ",\"attributes\":" + String(repeating: "{\"a\":", count: 9_000) + "1"
                + String(repeating: "}", count: 9_000))
          ]
        ], errors: 1),
    ]

    // Chunk sequences: each frame lost counts once, however many of its chunks
    // arrive. Every case uses new ids, as a producer does.
    func seq(_ id: UInt64) -> [Message] { chunks(id, size: 150, chunkSize: c) }
    func rehead(
      _ id: UInt64, _ index: Int, kind: String = "data", size: Int = 150, count: Int = 3, offset: Int
    )
      -> [Message]
    {
      var messages = seq(id)
      messages[index][0] = header(id: id, size: size, kind: kind, chunk: (index, count, offset))
      return messages
    }
    var a = seq(100)
    cases.append(Case(name: "chunks out of order", messages: [a[0], a[2], a[1]], errors: 1))
    cases.append(Case(name: "chunk with wrong offset", messages: rehead(101, 1, offset: c + 1), errors: 1))
    cases.append(Case(name: "first chunk at an offset", messages: rehead(102, 0, offset: 5), errors: 1))
    a = seq(103)
    cases.append(Case(name: "chunks without their first", messages: [a[1], a[2]], errors: 1))
    cases.append(
      Case(name: "chunk with another count", messages: rehead(104, 1, count: 4, offset: c), errors: 1))
    cases.append(
      Case(name: "chunk with another size", messages: rehead(105, 1, size: 160, offset: c), errors: 1))
    cases.append(
      Case(
        name: "chunk with another kind", messages: rehead(106, 1, kind: "series-end", offset: c), errors: 1))
    a = seq(107)
    let b = seq(108)
    cases.append(
      Case(
        name: "chunks of two frames interleaved", messages: [a[0], b[0], a[1], b[1], a[2], b[2]], errors: 2))
    a = seq(109)
    cases.append(Case(name: "chunk repeated", messages: [a[0], a[1], a[1], a[2]], errors: 1))
    a = seq(110)
    cases.append(
      Case(
        name: "truncated chunk sequence, then an unchunked frame", messages: [a[0], a[1], frame(111)],
        errors: 1,
        arrives: [111]))
    a = seq(112)
    cases.append(
      Case(
        name: "truncated chunk sequence, then a chunked frame", messages: [a[0], a[1]] + seq(113), errors: 1,
        arrives: [113]))
    a = seq(114)
    a[2][1] = Array(a[2][1].dropLast(10))
    cases.append(Case(name: "last chunk with bytes missing", messages: a, errors: 1))
    a = seq(115)
    a[2][1] += [1, 2, 3]
    cases.append(Case(name: "last chunk with extra bytes", messages: a, errors: 1))
    a = seq(116)
    a[1][1] += Array(repeating: 9, count: 60)
    cases.append(Case(name: "middle chunk beyond the size", messages: a, errors: 1))
    cases.append(
      Case(
        name: "chunked frame above max_message", messages: chunks(117, size: 300_000, chunkSize: 100_000),
        errors: 1))
    cases.append(
      Case(
        name: "unchunked frame above max_message in small parts",
        messages: [[header(id: 118, size: 200_000), content(118, 100_000), content(118, 100_000)]], errors: 1)
    )

    // Truncated valid headers: never a JSON object.
    var random = SplitMix(state: 42)
    let full = header(
      id: 119, size: 10,
      fields: ",\"created_ns\":1764048000123456789,\"shape\":[5,1],\"dtype\":\"uint16\","
        + "\"checksums\":{\"xxh3\":\"9a0b3c5d1e2f4a6b\"},\"attributes\":{\"beamline\":\"p11\"}")
    let truncated = (0..<60).map { _ in Array(full.prefix(1 + random.next(below: full.count - 1))) }
    cases.append(
      Case(
        name: "truncated headers", messages: truncated.map { [$0, payload] },
        errors: truncated.filter { !decodes($0) }.count))
    #expect(truncated.allSatisfy { !decodes($0) })

    // Random bytes: 300 messages of 1 to 4 random parts of 0 to 3000 bytes.
    let noise = (0..<300).map { _ in
      (0...random.next(below: 4)).map { _ in
        (0..<random.next(below: 3001)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
      }
    }
    #expect(noise.allSatisfy { !decodes($0[0]) })
    cases.append(Case(name: "random bytes", messages: noise, errors: noise.count))
    return cases
  }

  /// JSON `true` is not the integer 1 (Foundation on Linux bridges it to `Int`),
  /// and 1.0 is not an integer either.
  @Test(arguments: [
    "{\"hidra\":true,\"kind\":\"data\",\"size\":0}",
    "{\"hidra\":1,\"kind\":\"data\",\"size\":true}",
    "{\"hidra\":1,\"kind\":\"data\",\"size\":1,\"chunk\":{\"index\":false,\"count\":true,\"offset\":0}}",
    "{\"hidra\":1.0,\"kind\":\"data\",\"size\":0}",
    "{\"hidra\":1,\"kind\":\"data\",\"size\":0,\"shape\":[2,true]}",
  ])
  func booleansAreNotIntegers(_ text: String) {
    #expect(!Self.decodes(Array(text.utf8)), "\(text)")
  }

  static func send(_ parts: Message, on socket: borrowing Socket) throws {
    var message = MultipartMessage(minimumCapacity: parts.count)
    for part in parts { message.append(part) }
    try socket.send(message)
  }

  @Test func malformedMessagesAreCountedAndNeverStopTheSource() throws {
    let port = ForwardTests.freePort()
    let run = try Run(
      """
      nodes:
        in: {type: zmq, listen: "tcp://127.0.0.1:\(port)", max_message: 128KiB, acknowledge: false}
        rec: {type: record, input: in}
      """)
    defer { _ = run.stop() }
    let context = try ZMQContext()
    let socket = try Socket(.push, context: context)
    try socket.setOption(.linger, 0)
    try socket.setOption(.sendTimeout, 5000)
    // Connect (the source binds) so that ZeroMQ reconnects after the source's
    // ZeroMQ drops a message above max_message and closes the connection.
    try socket.connect("tcp://127.0.0.1:\(port)")

    var sentinel: UInt64 = 900_000
    var expectedErrors = 0
    var expectedFrames: Set<UInt64> = []
    /// Sends a valid frame and waits until it arrives: every message sent before it was handled.
    func sync(_ name: String, retrying: Bool = false) throws -> Bool {
      for _ in 0..<(retrying ? 20 : 1) {
        sentinel += 1
        let id = sentinel
        try Self.send(Self.frame(id), on: socket)
        if Self.waitUntil(
          seconds: retrying ? 1 : 10, { run.recorder.data(of: "rec").contains { $0.meta.id == id } })
        {
          expectedFrames.insert(id)
          return true
        }
      }
      Issue.record("\(name): the source stopped taking frames")
      return false
    }
    #expect(try sync("before the corpus", retrying: true))

    for item in Self.corpus() {
      let before = run.errors("in")
      for message in item.messages { try Self.send(message, on: socket) }
      guard try sync(item.name) else { return }
      #expect(run.errors("in") - before == item.errors, "case '\(item.name)'")
      expectedErrors += item.errors
      expectedFrames.formUnion(item.arrives)
    }

    // A part above max_message: the source's ZeroMQ drops it and disconnects the
    // sender (which reconnects), so the source never sees it and counts nothing.
    // A valid header makes sure: had the source seen it, it would count 'oversized'.
    let before = run.errors("in")
    try Self.send(Self.frame(120, size: 200_000), on: socket)
    #expect(try sync("part above max_message", retrying: true))
    #expect(run.errors("in") == before, "case 'part above max_message (dropped by ZeroMQ)'")

    // Valid frames after the corpus: all arrive intact, with their metadata.
    let chunked = Self.chunks(200, size: 40_000, chunkSize: 10_000)
    let described = Self.header(
      id: 201, size: 30,
      fields: ",\"created_ns\":1764048000123456789,\"content_type\":\"image/x-raw\",\"encoding\":\"lz4\","
        + "\"shape\":[5,3],\"dtype\":\"uint16\",\"checksums\":{\"xxh3\":\"9a0b3c5d1e2f4a6b\"},"
        + "\"attributes\":{\"beamline\":\"p11\"},\"future_key\":[1,{\"x\":2}]")
    let valid: [Message] =
      [
        [Self.header(id: 199, size: 0, kind: "series-start")],
        [described, Array(Self.content(201, 30)[0..<10]), [], Array(Self.content(201, 30)[10..<30])],
        [Self.header(id: 202, size: 0)],
      ] + chunked + [Self.frame(203, size: 120_000), [Self.header(id: 204, size: 0, kind: "series-end")]]
    for message in valid { try Self.send(message, on: socket) }
    expectedFrames.formUnion([200, 201, 202, 203])
    let allArrived = Self.waitUntil { run.recorder.frames(of: "rec").contains { $0.meta.id == 204 } }
    #expect(allArrived, "the valid frames after the corpus arrive")
    #expect(run.errors("in") == expectedErrors, "no error for the valid frames")
    #expect(run.stop())
    #expect(run.runtime.failures.isEmpty, "\(run.runtime.failures)")
    #expect(run.errors("in") == expectedErrors)

    let data = run.recorder.data(of: "rec")
    #expect(Set(data.map(\.meta.id)) == expectedFrames, "exactly the valid frames arrive")
    #expect(data.count == expectedFrames.count, "each once")
    for frame in data {
      #expect(
        Self.bytes(frame) == Self.content(frame.meta.id, frame.byteCount), "bytes of frame \(frame.meta.id)")
      #expect(frame.meta.name == "frame_\(frame.meta.id).raw")
    }
    let sizes = Dictionary(data.map { ($0.meta.id, $0.byteCount) }) { first, _ in first }
    #expect(sizes[113] == 150 && sizes[200] == 40_000 && sizes[202] == 0 && sizes[203] == 120_000)
    #expect(data.first { $0.meta.id == 200 }?.parts.count == 4)
    #expect(data.first { $0.meta.id == 201 }?.parts.count == 2, "empty parts are left out")
    let meta = try #require(data.first { $0.meta.id == 201 }?.meta)
    #expect(meta.series == 4 && meta.frame == 201 && meta.createdNanos == 1_764_048_000_123_456_789)
    #expect(meta.contentType == "image/x-raw" && meta.encoding == "lz4")
    #expect(meta.shape == [5, 3] && meta.dtype == "uint16")
    #expect(meta.checksums == ["xxh3": "9a0b3c5d1e2f4a6b"] && meta.attributes == ["beamline": "p11"])
    let kinds = run.recorder.frames(of: "rec").filter { [199, 204].contains($0.meta.id) }.map(\.kind)
    #expect(kinds == [.seriesStart, .seriesEnd])
  }

  // MARK: - Stopping

  @Test func stopsPromptlyWithoutAProducer() throws {
    let port = ForwardTests.freePort()
    let run = try Run(
      """
      nodes:
        in: {type: zmq, listen: "tcp://127.0.0.1:\(port)"}
        rec: {type: record, input: in}
      """)
    Thread.sleep(forTimeInterval: 0.3)
    let start = Date()
    #expect(run.stop(), "the source did not stop within 5 s")
    #expect(Date().timeIntervalSince(start) < 2)
    #expect(run.runtime.failures.isEmpty, "\(run.runtime.failures)")
    #expect(run.errors("in") == 0)
  }

  @Test func stopCountsAFrameLeftIncomplete() throws {
    let port = ForwardTests.freePort()
    let run = try Run(
      """
      nodes:
        in: {type: zmq, connect: "tcp://127.0.0.1:\(port)", pattern: pull, acknowledge: false}
        rec: {type: record, input: in}
      """)
    let context = try ZMQContext()
    let socket = try Socket(.push, context: context)
    try socket.setOption(.linger, 0)
    try socket.setOption(.sendTimeout, 5000)
    try socket.bind("tcp://127.0.0.1:\(port)")
    try Self.send(Self.frame(1), on: socket)
    #expect(Self.waitUntil { run.recorder.data(of: "rec").count == 1 })
    try Self.send(Self.chunks(2, size: 150, chunkSize: 50)[0], on: socket)
    Thread.sleep(forTimeInterval: 0.2)
    #expect(run.stop())
    #expect(run.errors("in") == 1, "the incomplete frame is counted")
    #expect(run.recorder.data(of: "rec").map(\.meta.id) == [1])
    socket.close()
  }
}

extension ZMQSourceTests {
  /// Two push forwards send chunked frames to one listening zmq source at the
  /// same time: the source reassembles each forward's frames apart, so nothing
  /// is lost or mixed, and both senders end once everything is acknowledged.
  @Test func aListeningSourceKeepsTwoForwardsChunksApart() throws {
    let port = ForwardTests.freePort()
    let receiver = try Run(
      """
      nodes:
        in: {type: zmq, listen: "tcp://127.0.0.1:\(port)"}
        rec: {type: record, input: in}
      """)
    let senders = try [3, 4].map { seed in
      try Run(
        """
        nodes:
          det: {type: generate, size: 10000, count: 30, seed: \(seed), name: "s\(seed)_{frame}"}
          out: {type: forward, input: det, connect: "tcp://127.0.0.1:\(port)", chunk_size: 4096}
        """)
    }
    for sender in senders {
      #expect(sender.runtime.wait(timeoutNanos: 30_000_000_000), "every frame was acknowledged")
    }
    #expect(Self.waitUntil { receiver.recorder.data(of: "rec").count >= 60 })
    #expect(receiver.stop())
    #expect(receiver.errors("in") == 0, "no chunk was mixed with another frame's")
    let data = receiver.recorder.data(of: "rec")
    #expect(data.count == 60)
    for seed in [3, 4] {
      let mine = data.filter { $0.meta.name.hasPrefix("s\(seed)_") }
      #expect(mine.count == 30)
      let content = GeneratedContent(seed: UInt64(seed), size: 10000)
      for frame in mine {
        Self.bytes(frame).withUnsafeBytes {
          #expect(content.verify($0, series: frame.meta.series, frame: frame.meta.frame))
        }
      }
    }
  }
}
