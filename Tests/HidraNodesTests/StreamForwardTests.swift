import Foundation
import HidraGraph
import HidraRuntime
import Testing
import ZeroMQ

@testable import HidraNodes

/// The `forward` formats `eiger-stream-v1` and `-v2`: `FakeDCU` -> `eiger-stream`
/// source -> forward, read by plain ZeroMQ PULL sockets as DECTRIS stream
/// readers read a detector.
@Suite struct StreamForwardTests {
  typealias Run = ZMQSourceTests.Run
  typealias Message = FakeDCU.Message

  /// A stream reader: a PULL socket connected to the forward, and what it received
  /// (the socket closes when the reader is dropped).
  final class Reader {
    let context: ZMQContext
    let socket: Socket
    var messages: [Message] = []

    init(_ address: String, bind: Bool = false) throws {
      context = try ZMQContext()
      socket = try Socket(.pull, context: context)
      try socket.setOption(.linger, 0)
      if bind { try socket.bind(address) } else { try socket.connect(address) }
    }

    /// Receives until `done` holds for what was received, at most 10 s.
    @discardableResult
    func receive(until done: ([Message]) -> Bool) throws -> Bool {
      let deadline = Date().addingTimeInterval(10)
      while !done(messages) {
        if Date() >= deadline { return false }
        guard var message = try socket.tryReceiveMultipart() else {
          _ = try socket.poll(.readable, timeout: .milliseconds(20))
          continue
        }
        messages.append((0..<message.count).map { index in message.withPart(at: index) { $0.bytes } })
        message.removeAll()
      }
      return true
    }

    /// Takes what arrives within `seconds`.
    func drain(seconds: Double) throws {
      let deadline = Date().addingTimeInterval(seconds)
      _ = try receive { _ in Date() >= deadline }
    }
  }

  static func isHeader(_ message: Message, version: Int) -> Bool {
    version == 1
      ? String(decoding: message[0], as: UTF8.self).contains("dheader")
      : message[0].count > 14 && String(decoding: message[0].prefix(20), as: UTF8.self).contains("start")
  }

  /// The detector messages of one series: header, `images` images, end.
  static func series(_ series: Int, images: Int, version: Int) -> [Message] {
    // The first image is large: long ZMTP frames, sent from the payload without a copy.
    let blobs = (0..<images).map {
      FakeDCU.blob(series: series, frame: $0, size: $0 == 0 ? 1 << 20 + 17 : 200 + 10 * $0)
    }
    if version == 2 {
      return [[FakeDCU.v2Start(series: series, images: images)]]
        + blobs.enumerated().map {
          [FakeDCU.v2Image(series: series, image: $0, data: $1, compressed: $0 % 2 == 1)]
        }
        + [[FakeDCU.v2End(series: series)]]
    }
    let encodings = ["bs16-lz4<", "lz4<", "<"]
    return [FakeDCU.v1Header(series: series, detail: "all", appendix: true)]
      + blobs.enumerated().map { index, blob in
        FakeDCU.v1Image(
          series: series, frame: index, blob: blob, encoding: encodings[index % 3],
          hash: index == 0 ? "0123456789abcdef0123456789abcdef" : "",
          appendix: index == 1 ? FakeDCU.text("{\"shot\":1}") : nil)
      } + [FakeDCU.v1End(series: series)]
  }

  static func graph(_ dcu: borrowing FakeDCU, version: Int, format: Int? = nil, _ out: String) -> String {
    """
    nodes:
      det: {type: eiger-stream, endpoint: "\(dcu.endpoint)", version: "\(version)"}
      out: {type: forward, input: det, format: eiger-stream-v\(format ?? version), \(out)}
    """
  }

  /// Sends short series until every reader has received a header: then all are connected.
  static func warmUp(_ dcu: borrowing FakeDCU, _ readers: [Reader], version: Int) throws {
    for series in 1000..<1100 {
      let messages = Self.series(series, images: 0, version: version)
      try dcu.send(messages)
      for reader in readers { try reader.drain(seconds: 0.05) }
      if readers.allSatisfy({ $0.messages.contains { isHeader($0, version: version) } }) { return }
    }
    Issue.record("the readers never got a header")
  }

  @Test(arguments: [1, 2])
  func everyReaderGetsHeaderAndEndImagesAreSplit(_ version: Int) throws {
    let dcu = try FakeDCU()
    let port = ForwardTests.freePort()
    let run = try Run(Self.graph(dcu, version: version, "listen: \"tcp://127.0.0.1:\(port)\""))
    let readers = try [Reader("tcp://127.0.0.1:\(port)"), Reader("tcp://127.0.0.1:\(port)")]
    try Self.warmUp(dcu, readers, version: version)
    for reader in readers { reader.messages.removeAll() }

    let sent = Self.series(42, images: 6, version: version)
    try dcu.send(sent)
    for reader in readers {
      #expect(try reader.receive { $0.contains { $0 == sent.last! } }, "the series end reaches every reader")
    }
    #expect(run.stop())
    #expect(run.runtime.failures.isEmpty, "\(run.runtime.failures)")
    #expect(run.errors("out") == 0 && run.errors("det") == 0)

    var images: [Message] = []
    for reader in readers {
      // Warm-up series may still trail in before series 42.
      guard let first = reader.messages.firstIndex(of: sent[0]) else {
        Issue.record("a reader did not get the header")
        continue
      }
      let got = Array(reader.messages[first...])
      #expect(got.first == sent.first, "the header, byte for byte, to every reader")
      #expect(got.last == sent.last, "the end, byte for byte, to every reader")
      #expect(got.count == 2 + 3, "images in turn: three each")
      images += got.dropFirst().dropLast()
    }
    let sentImages = Array(sent.dropFirst().dropLast())
    #expect(images.count == 6)
    #expect(
      Set(images.map { $0.flatMap { $0 } }) == Set(sentImages.map { $0.flatMap { $0 } }), "every image once")
    for image in images { #expect(sentImages.contains(image), "an image byte for byte, part for part") }
  }

  @Test func aReaderJoiningMidSeriesFirstGetsTheHeader() throws {
    let dcu = try FakeDCU()
    let port = ForwardTests.freePort()
    let run = try Run(Self.graph(dcu, version: 1, "listen: \"tcp://127.0.0.1:\(port)\""))
    let first = try Reader("tcp://127.0.0.1:\(port)")
    try Self.warmUp(dcu, [first], version: 1)
    let sent = Self.series(7, images: 8, version: 1)
    try dcu.send([sent[0], sent[1]])
    #expect(try first.receive { $0.contains(sent[1]) })
    let late = try Reader("tcp://127.0.0.1:\(port)")
    // Until the late reader is connected, every image goes to the first one.
    var next = 2
    while late.messages.isEmpty, next < sent.count - 1 {
      try dcu.send(sent[next])
      next += 1
      try late.drain(seconds: 0.1)
    }
    try dcu.send(Array(sent[next...]))
    #expect(try late.receive { $0.contains(sent.last!) })
    #expect(try first.receive { $0.contains(sent.last!) })
    #expect(run.stop())
    #expect(late.messages.first == sent[0], "the open series' header comes first")
    #expect(late.messages.count > 2, "then images of that series, and its end")
  }

  @Test func aConnectingForwardServesTheOneReader() throws {
    let dcu = try FakeDCU()
    let port = ForwardTests.freePort()
    let reader = try Reader("tcp://127.0.0.1:\(port)", bind: true)
    let run = try Run(Self.graph(dcu, version: 2, "connect: \"tcp://127.0.0.1:\(port)\""))
    let sent = Self.series(3, images: 4, version: 2)
    try dcu.send(sent)
    #expect(try reader.receive { $0.count == sent.count })
    #expect(run.stop())
    #expect(reader.messages == sent, "every message in order, byte for byte")
  }

  @Test(arguments: [(1, 2), (2, 1)])
  func conversionBetweenVersionsIsRefusedAndCounted(_ versions: (Int, Int)) throws {
    let (input, output) = versions
    let dcu = try FakeDCU()
    let port = ForwardTests.freePort()
    let run = try Run(
      Self.graph(dcu, version: input, format: output, "listen: \"tcp://127.0.0.1:\(port)\""))
    let reader = try Reader("tcp://127.0.0.1:\(port)")
    try dcu.send(Self.series(5, images: 3, version: input))
    // The start and the three images are refused; the end of a refused series is not sent.
    #expect(ZMQSourceTests.waitUntil { run.errors("out") == 4 })
    try reader.drain(seconds: 0.3)
    #expect(run.stop())
    #expect(run.runtime.failures.isEmpty)
    #expect(reader.messages.isEmpty)
  }

  @Test func peersThatAreNotStreamReadersAreCountedAndClosed() throws {
    let dcu = try FakeDCU()
    let port = ForwardTests.freePort()
    let run = try Run(Self.graph(dcu, version: 1, "listen: \"tcp://127.0.0.1:\(port)\""))
    let reader = try Reader("tcp://127.0.0.1:\(port)")
    try Self.warmUp(dcu, [reader], version: 1)
    // Now listening: a ZeroMQ PUSH socket (the wrong socket type) and a client that
    // is not ZeroMQ at all.
    let context = try ZMQContext()
    let push = try Socket(.push, context: context)
    try push.setOption(.linger, 0)
    try push.setOption(.reconnectInterval, 60_000)  // one attempt during the test
    try push.connect("tcp://127.0.0.1:\(port)")
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
    #expect(connected == 0)
    let request = Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
    #expect(write(fd, request, request.count) == request.count)
    // Problems are reported as frames pass: send series until both are counted.
    var series = 1
    #expect(
      ZMQSourceTests.waitUntil {
        series += 1
        try? dcu.send(Self.series(series, images: 0, version: 1))
        Thread.sleep(forTimeInterval: 0.02)
        return run.errors("out") >= 2
      })
    try reader.drain(seconds: 0.1)
    #expect(reader.messages.count > 2, "the reader still gets its stream")
    #expect(run.stop())
    #expect(run.runtime.failures.isEmpty, "\(run.runtime.failures)")
    #expect(run.errors("out") == 2, "each bad peer is counted once")
  }

  @Test func encoderRebuildsV1ImagesFromMetadata() {
    var encoder = StreamForward.Encoder(version: 1)
    var meta = FrameMeta(series: 2, frame: 5, encoding: "bs32-lz4", shape: [4, 3], dtype: "uint32")
    meta.attributes = ["start_time": "10", "real_time": "2", "hash": "x\"y"]
    let frame = Frame(kind: .data, meta: meta, parts: [Payload(copying: [1, 2, 3])])
    guard case .image(let message) = encoder.encode(frame) else {
      Issue.record("not an image")
      return
    }
    let texts = message.parts.map { String(decoding: $0.flatMap { Array($0.bytes) }, as: UTF8.self) }
    #expect(texts[0] == "{\"htype\":\"dimage-1.0\",\"series\":2,\"frame\":5,\"hash\":\"x\\\"y\"}")
    #expect(
      texts[1]
        == "{\"htype\":\"dimage_d-1.0\",\"shape\":[4,3],\"type\":\"uint32\",\"encoding\":\"bs32-lz4<\",\"size\":3}"
    )
    #expect(texts[3] == "{\"htype\":\"dconfig-1.0\",\"start_time\":10,\"real_time\":2}")
    var unknown = meta
    unknown.encoding = "zstd"
    guard case .refused = encoder.encode(Frame(kind: .data, meta: unknown)) else {
      Issue.record("an unknown encoding must be refused")
      return
    }
    #expect(StreamForward.Encoder.cborEnd(7, "01HZ-series-7") == FakeDCU.v2End(series: 7))
  }

  @Test func zmtpFramingFollowsRFC23() {
    #expect(ZMTPPushServer.greeting.count == 64)
    #expect(ZMTPPushServer.frameHeader(size: 255, more: true, command: false) == [0x01, 255])
    #expect(
      ZMTPPushServer.frameHeader(size: 256, more: false, command: false) == [0x02, 0, 0, 0, 0, 0, 0, 1, 0])
    let ready = ZMTPPushServer.ready
    #expect(ready[0] == 0x04 && Int(ready[1]) == ready.count - 2)
    #expect(ZMTPPushServer.IOLoop.property(Array(ready[8...]), "Socket-Type") == "PUSH")
  }
}
