import Foundation
import HidraGraph
import HidraNodes
import HidraRuntime
import Testing
import ZeroMQ

/// The native forward, read by a plain ZeroMQ consumer as any client would read
/// it (docs/wire.md).
@Suite struct ForwardTests {
  /// A free TCP port on 127.0.0.1 (bind to port 0, read it, release it).
  static func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    _ = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
  }

  /// Receives messages until `count` data frames were reassembled or 10 s pass.
  static func consume(_ socket: borrowing Socket, frames count: Int) throws -> [(Wire.Header, [UInt8])] {
    var frames: [(Wire.Header, [UInt8])] = []
    var partial: (Wire.Header, [UInt8])?
    let deadline = Date().addingTimeInterval(10)
    while frames.count(where: { $0.0.kind == .data }) < count, Date() < deadline {
      guard var message = try socket.tryReceiveMultipart() else {
        _ = try socket.poll(.readable, timeout: .milliseconds(100))
        continue
      }
      let header = try message.withPart(at: 0) { part in
        try part.withUnsafeBytes { try Wire.decodeHeader($0) }
      }
      var payload: [UInt8] = []
      for index in 1..<message.count { payload += message.withPart(at: index) { $0.bytes } }
      message.removeAll()
      if let chunk = header.chunk {
        if chunk.index == 0 { partial = (header, []) }
        #expect(partial?.1.count == chunk.offset, "chunks arrive in order")
        partial?.1 += payload
        if chunk.index == chunk.count - 1, let done = partial {
          frames.append(done)
          partial = nil
        }
      } else {
        frames.append((header, payload))
      }
    }
    return frames
  }

  func run(_ yaml: String, consumer: (borrowing Socket) throws -> Void, socketType: SocketType, port: Int)
    throws
  {
    let result = GraphValidator(catalog: NodeTypes.catalog).validate(text: yaml, file: "t.yaml")
    #expect(!result.diagnostics.hasErrors, "\(result.diagnostics.sorted)")
    let context = try ZMQContext()
    let socket = try Socket(socketType, context: context)
    if socketType == .sub { try socket.subscribe("") }
    try socket.connect("tcp://127.0.0.1:\(port)")
    let runtime = try Runtime(graph: try #require(result.graph), factory: NodeRuntime())
    runtime.start()
    try consumer(socket)
    #expect(runtime.wait(timeoutNanos: 10_000_000_000))
    #expect(runtime.failures.isEmpty)
    socket.close()
  }

  @Test func plainPushDeliversEveryFrameWithHeaderAndBytes() throws {
    let port = Self.freePort()
    try run(
      """
      nodes:
        det: {type: generate, size: 10000, count: 25, frames_per_series: 10, seed: 3}
        sum: {type: checksum, input: det}
        out: {type: forward, input: sum, listen: "tcp://127.0.0.1:\(port)", chunk_size: 4096, acknowledge: false}
      """,
      consumer: { socket in
        let frames = try Self.consume(socket, frames: 25)
        let data = frames.filter { $0.0.kind == .data }
        #expect(data.count == 25)
        #expect(frames.count(where: { $0.0.kind == .seriesStart }) == 3)
        let content = GeneratedContent(seed: 3, size: 10000)
        for (header, payload) in data {
          #expect(header.size == 10000 && payload.count == 10000)
          payload.withUnsafeBytes {
            #expect(content.verify($0, series: header.meta.series, frame: header.meta.frame))
          }
          let digest = ChecksumNode.Digest.hex("xxh3", [Payload(copying: payload)])
          #expect(header.meta.checksums["xxh3"] == digest)
        }
        #expect(data.map(\.0.meta.frame).prefix(3) == [0, 1, 2])
      }, socketType: .pull, port: port)
  }

  @Test func publishReachesASubscriber() throws {
    let port = Self.freePort()
    try run(
      """
      nodes:
        det: {type: generate, size: 100, rate: 200/s, duration: 1s}
        out: {type: forward, input: {from: det, delivery: latest}, pattern: pub, listen: "tcp://127.0.0.1:\(port)"}
      """,
      consumer: { socket in
        let frames = try Self.consume(socket, frames: 20)
        #expect(frames.count(where: { $0.0.kind == .data }) >= 20, "a late subscriber still gets the stream")
      }, socketType: .sub, port: port)
  }

  @Test func headerRoundTripsAndRejectsGarbage() throws {
    var frame = Frame(kind: .data, meta: FrameMeta(id: 7, series: 2, frame: 5, name: "a \"quoted\"/name.raw"))
    frame.meta.checksums = ["xxh3": "00ff"]
    frame.meta.attributes = ["k": "v\n"]
    frame.meta.shape = [4, 2]
    frame.meta.dtype = "uint16"
    frame.parts = [Payload(copying: [1, 2, 3])]
    let bytes = Wire.encodeHeader(frame, chunk: Wire.Chunk(index: 1, count: 3, offset: 8))
    let header = try bytes.withUnsafeBytes { try Wire.decodeHeader($0) }
    #expect(header.meta == frame.meta)
    #expect(header.size == 3)
    #expect(header.chunk == Wire.Chunk(index: 1, count: 3, offset: 8))
    for (text, kind) in [
      ("not json", "bad-header"), ("{\"hidra\": 2, \"kind\": \"data\", \"size\": 1}", "wrong-version"),
      ("{\"hidra\": 1, \"kind\": \"image\", \"size\": 1}", "bad-header"),
      ("{\"hidra\": 1, \"kind\": \"data\", \"size\": -1}", "bad-header"),
      (
        "{\"hidra\": 1, \"kind\": \"data\", \"size\": 1, \"chunk\": {\"index\": 3, \"count\": 3, \"offset\": 0}}",
        "bad-chunk"
      ),
    ] {
      #expect(throws: Wire.DecodeError.self) {
        try Array(text.utf8).withUnsafeBytes { try Wire.decodeHeader($0) }
      }
      do { _ = try Array(text.utf8).withUnsafeBytes { try Wire.decodeHeader($0) } } catch let error
        as Wire.DecodeError
      {
        #expect(error.kind == kind, "\(text)")
      }
    }
  }
}
