import Foundation
import HidraCodec
import HidraGraph
import HidraRuntime
import Synchronization
import Testing
import ZeroMQ

@testable import HidraNodes

/// The simplon-monitor forward, fed by `FakeDCU` through a real `eiger-stream`
/// source, read by an HTTP client that behaves like OnDA Monitor's (one
/// connection per request, the PUTs it makes, a 408 loop on `images/next`), and
/// by hostile clients.
@Suite struct SimplonMonitorTests {
  typealias Run = ZMQSourceTests.Run

  // MARK: - A plain HTTP/1.1 client, one connection per request

  struct Reply {
    var status: Int
    var headers: [String: String]
    var body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
    /// The `value` of a JSON body.
    var value: Any? {
      (try? JSONSerialization.jsonObject(with: Data(body))).flatMap { ($0 as? [String: Any])?["value"] }
    }
  }

  struct ClientError: Error, CustomStringConvertible {
    var description: String
  }

  /// Sends `raw` bytes on a new connection to 127.0.0.1:`port` and reads the
  /// answer until the server closes (or 10 s pass); nil if nothing came back.
  static func exchange(_ port: Int, raw: [UInt8]) throws -> [UInt8] {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw ClientError(description: "socket: \(errno)") }
    defer { close(fd) }
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
    guard connected == 0 else { throw ClientError(description: "connect to \(port): errno \(errno)") }
    var sent = 0
    while sent < raw.count {
      let count = raw.withUnsafeBytes {
        send(fd, $0.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
      }
      if count <= 0 { break }  // the server may answer and close before reading everything
      sent += count
    }
    var answer: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
      let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
      if count <= 0 { break }
      answer += chunk[0..<count]
    }
    return answer
  }

  /// One request on its own connection (`Connection: close`), like OnDA's.
  static func request(
    _ port: Int, _ method: String, _ path: String, json: String? = nil, body: [UInt8]? = nil,
    headers extra: [String] = []
  ) throws -> Reply {
    let payload = body ?? json.map { Array($0.utf8) } ?? []
    var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
    if json != nil { head += "Content-Type: application/json\r\n" }
    if method == "PUT" || !payload.isEmpty { head += "Content-Length: \(payload.count)\r\n" }
    for line in extra { head += line + "\r\n" }
    let answer = try exchange(port, raw: Array((head + "\r\n").utf8) + payload)
    return try parse(answer)
  }

  static func parse(_ answer: [UInt8]) throws -> Reply {
    guard let end = answer.firstRange(of: Array("\r\n\r\n".utf8)) else {
      throw ClientError(description: "no HTTP answer (\(answer.count) bytes)")
    }
    let lines = String(decoding: answer[..<end.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
    let statusParts = lines[0].split(separator: " ")
    guard statusParts.count >= 2, let status = Int(statusParts[1]) else {
      throw ClientError(description: "bad status line '\(lines[0])'")
    }
    var headers: [String: String] = [:]
    for line in lines.dropFirst() {
      guard let colon = line.firstIndex(of: ":") else { continue }
      headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
        in: .whitespaces)
    }
    let body = Array(answer[end.upperBound...])
    guard let length = headers["content-length"].flatMap({ Int($0) }) else {
      throw ClientError(description: "no Content-Length in \(lines)")
    }
    guard body.count == length else {
      throw ClientError(description: "Content-Length \(length) but \(body.count) bytes")
    }
    return Reply(status: status, headers: headers, body: body)
  }

  // MARK: - The monitor's TIFF, read back

  struct Image: Equatable {
    var series: Int32
    var frame: Int32
    var time: String
    var width: Int
    var height: Int
    var bits: Int
    var format: Int
    var pixels: [UInt8]
  }

  static func readTIFF(_ bytes: [UInt8]) throws -> Image {
    try #require(bytes.count >= TIFF.headerSize)
    let tags = try CodecTests.tiffTags(bytes)
    func int32(_ offset: Int) -> Int32 {
      bytes.withUnsafeBytes { Int32(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: Int32.self)) }
    }
    let offset = try #require(tags[273])
    let count = try #require(tags[279])
    try #require(offset + count == bytes.count, "one strip, to the end")
    #expect(tags[259] == 1 && tags[277] == 1 && tags[278] == tags[257])
    return Image(
      series: int32(42), frame: int32(54), time: String(decoding: bytes[162..<191], as: UTF8.self),
      width: try #require(tags[256]), height: try #require(tags[257]), bits: try #require(tags[258]),
      format: try #require(tags[339]), pixels: Array(bytes[offset...]))
  }

  /// `YYYY-MM-DDTHH:MM:SS.mmm+00:00`, and no more than a minute from now.
  static func isRecentTime(_ text: String) -> Bool {
    guard text.utf8.count == 29, text.hasSuffix("+00:00") else { return false }
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "UTC")
    formatter.dateFormat = "yyyy-MM-dd'T'HH:mm:ss.SSS'+00:00'"
    guard let date = formatter.date(from: text) else { return false }
    return abs(date.timeIntervalSinceNow) < 60
  }

  // MARK: - Frames for the fake detector

  /// Pixels of image `frame` of `series`: detector-like counts, a few gaps (all ones).
  static func pixels(series: Int, frame: Int, count: Int, elementSize: Int) -> [UInt8] {
    var data = CodecTests.data(
      count: count, elementSize: elementSize, seed: UInt64(series * 1000 + frame + 1))
    // A recognisable first pixel: the frame number.
    for b in 0..<elementSize { data[b] = UInt8(truncatingIfNeeded: frame >> (8 * b)) }
    return data
  }

  /// A stream v1 image message of `width` x `height` `dtype` pixels, encoded as `encoding`.
  static func v1Image(
    series: Int, frame: Int, width: Int, height: Int, dtype: String, encoding: String, pixels: [UInt8]
  ) -> FakeDCU.Message {
    let blob: [UInt8]
    switch encoding {
    case "lz4<": blob = pixels.withUnsafeBytes { LZ4.compress($0) }
    case "<": blob = pixels
    default:
      let bits = Int(encoding.dropFirst(2).prefix { $0.isNumber })!
      blob = pixels.withUnsafeBytes { Bitshuffle.compressLZ4($0, elementSize: bits / 8) }
    }
    return [
      FakeDCU.text("{\"htype\":\"dimage-1.0\",\"series\":\(series),\"frame\":\(frame),\"hash\":\"\"}"),
      FakeDCU.text(
        "{\"htype\":\"dimage_d-1.0\",\"shape\":[\(width),\(height)],\"type\":\"\(dtype)\","
          + "\"encoding\":\"\(encoding)\",\"size\":\(blob.count)}"),
      blob,
      FakeDCU.text("{\"htype\":\"dconfig-1.0\",\"start_time\":1,\"stop_time\":2,\"real_time\":1}"),
    ]
  }

  /// A stream v2 image message with one channel: a tag-40 array of `width` x
  /// `height` elements under typed-array `tag`, raw or bslz4 (DECTRIS tag 56500).
  static func v2Image(
    series: Int, image: Int, width: Int, height: Int, tag: UInt64, elementSize: Int, pixels: [UInt8],
    compressed: Bool
  )
    -> [UInt8]
  {
    var w = CBORWriter()
    w.selfDescribe()
    w.map(4)
    w.text("type")
    w.text("image")
    w.text("series_id")
    w.uint(UInt64(series))
    w.text("image_id")
    w.uint(UInt64(image))
    w.text("data")
    w.map(1)
    w.text("threshold_1")
    w.tag(40)
    w.array(2)
    w.array(2)
    w.uint(UInt64(height))
    w.uint(UInt64(width))
    w.tag(tag)
    if compressed {
      w.tag(56500)
      w.array(3)
      w.text("bslz4")
      w.uint(UInt64(elementSize))
      w.byteString(pixels.withUnsafeBytes { Bitshuffle.compressLZ4($0, elementSize: elementSize) })
    } else {
      w.byteString(pixels)
    }
    return w.bytes
  }

  /// A graph: the fake detector's stream into a simplon-monitor forward.
  static func start(_ dcu: borrowing FakeDCU, port: Int, version: String = "1", options: String = "") throws
    -> Run
  {
    try Run(
      """
      nodes:
        det: {type: eiger-stream, endpoint: "\(dcu.endpoint)", version: "\(version)"}
        live:
          type: forward
          input: {from: det, delivery: latest, buffer: {frames: 64}}
          format: simplon-monitor
          listen: "http://127.0.0.1:\(port)"\(options)
      """)
  }

  static let api = "/monitor/api/1.8.0"

  /// OnDA's start: GET config/mode until the server answers, then its three PUTs.
  static func ondaStart(_ port: Int, bufferSize: Int) throws {
    #expect(
      ZMQSourceTests.waitUntil(seconds: 10) {
        (try? request(port, "GET", "\(api)/config/mode"))?.status == 200
      }, "the monitor answers")
    let mode = try request(port, "GET", "\(api)/config/mode")
    #expect(mode.value as? String == "enabled")
    for (key, value) in [
      ("mode", "\"enabled\""), ("discard_new", "false"), ("buffer_size", String(bufferSize)),
    ] {
      let reply = try request(port, "PUT", "\(api)/config/\(key)", json: "{\"value\": \(value)}")
      #expect(reply.status == 200, "PUT config/\(key) answers exactly 200 (\(reply.status) \(reply.text))")
    }
  }

  /// `images/next` until `shared` holds `count` TIFFs or 15 s passed, sleeping
  /// after each 408 (OnDA sleeps 0.5 s); returns any other answers.
  static func takeImages(_ port: Int, count: Int, shared: borrowing Mutex<[[UInt8]]>) -> [String] {
    var unexpected: [String] = []
    let deadline = Date().addingTimeInterval(15)
    while shared.withLock({ $0.count }) < count, Date() < deadline {
      do {
        let reply = try request(port, "GET", "\(api)/images/next")
        switch reply.status {
        case 200: shared.withLock { $0.append(reply.body) }
        case 408: Thread.sleep(forTimeInterval: 0.02)
        default: unexpected.append("\(reply.status) \(reply.text)")
        }
      } catch {
        unexpected.append("\(error)")
      }
    }
    return unexpected
  }

  // MARK: - Tests

  struct V1Case: Sendable, CustomTestStringConvertible {
    var dtype: String
    var encoding: String
    var width: Int
    var height: Int
    var testDescription: String { "\(width) x \(height) \(dtype) '\(encoding)'" }
  }

  /// OnDA's sequence against stream v1 images in every encoding; two workers
  /// share `images/next`: every image reaches exactly one of them, intact.
  @Test(arguments: [
    V1Case(dtype: "uint32", encoding: "bs32-lz4<", width: 1030, height: 514),
    V1Case(dtype: "uint16", encoding: "bs16-lz4<", width: 37, height: 29),
    V1Case(dtype: "uint8", encoding: "bs8-lz4<", width: 100, height: 3),
    V1Case(dtype: "uint16", encoding: "lz4<", width: 64, height: 48),
    V1Case(dtype: "uint32", encoding: "<", width: 17, height: 5),
  ])
  func ondaReadsStreamV1Images(_ item: V1Case) throws {
    let dcu = try FakeDCU()
    let port = ForwardTests.freePort()
    let run = try Self.start(dcu, port: port)
    try Self.ondaStart(port, bufferSize: 16)
    let series = 3
    let elementSize = ["uint8": 1, "uint16": 2, "uint32": 4][item.dtype]!
    let count = 12
    let sent = (0..<count).map {
      Self.pixels(series: series, frame: $0, count: item.width * item.height, elementSize: elementSize)
    }
    try dcu.send([FakeDCU.v1Header(series: series, detail: "basic")])
    for (frame, pixels) in sent.enumerated() {
      try dcu.send(
        Self.v1Image(
          series: series, frame: frame, width: item.width, height: item.height, dtype: item.dtype,
          encoding: item.encoding, pixels: pixels))
    }
    let received = Mutex<[[UInt8]]>([])
    let problems = Mutex<[String]>([])
    DispatchQueue.concurrentPerform(iterations: 2) { _ in
      let unexpected = Self.takeImages(port, count: count, shared: received)
      problems.withLock { $0 += unexpected }
    }
    #expect(problems.withLock { $0 }.isEmpty, "\(problems.withLock { $0 })")
    let images = try received.withLock { $0 }.map(Self.readTIFF).sorted { $0.frame < $1.frame }
    #expect(images.map(\.frame) == (0..<Int32(count)).map { $0 }, "each image exactly once")
    for image in images {
      #expect(image.series == Int32(series))
      #expect(image.width == item.width && image.height == item.height)
      #expect(image.bits == elementSize * 8 && image.format == 1)
      #expect(image.pixels == sent[Int(image.frame)], "pixels of frame \(image.frame)")
      #expect(Self.isRecentTime(image.time), "\(image.time)")
    }
    let empty = try Self.request(port, "GET", "\(Self.api)/images/next")
    #expect(empty.status == 408, "408 at once when no image is ready")
    #expect(run.stop())
    #expect(run.runtime.failures.isEmpty, "\(run.runtime.failures)")
    #expect(run.errors("live") == 0 && run.errors("det") == 0)
    #expect(run.runtime.metrics.node("live")?.framesOut.load(ordering: .relaxed) == count)
  }

  /// Stream v2: the image inside the CBOR message, raw or bslz4, uint16 and uint32.
  @Test func streamV2ImagesAreServed() throws {
    let dcu = try FakeDCU()
    let port = ForwardTests.freePort()
    let run = try Self.start(dcu, port: port, version: "2")
    try Self.ondaStart(port, bufferSize: 8)
    let (width, height) = (65, 33)
    let cases: [(UInt64, Int, Bool)] = [
      (69, 2, true), (70, 4, true), (69, 2, false), (70, 4, false), (66, 4, false),
    ]
    var sent: [[UInt8]] = []
    try dcu.send([[FakeDCU.v2Start(series: 9, images: cases.count)]])
    for (image, (tag, size, compressed)) in cases.enumerated() {
      let values = Self.pixels(series: 9, frame: image, count: width * height, elementSize: size)
      // Tag 66 is big-endian uint32 on the wire; the TIFF is little-endian.
      let wire = tag == 66 ? Self.swapped(values, size: 4) : values
      try dcu.send([
        Self.v2Image(
          series: 9, image: image, width: width, height: height, tag: tag, elementSize: size, pixels: wire,
          compressed: compressed)
      ])
      sent.append(values)
    }
    let received = Mutex<[[UInt8]]>([])
    let problems = Self.takeImages(port, count: cases.count, shared: received)
    #expect(problems.isEmpty, "\(problems)")
    let images = try received.withLock { $0 }.map(Self.readTIFF)
    #expect(images.map(\.frame) == (0..<Int32(cases.count)).map { $0 })
    for image in images {
      let (_, size, _) = cases[Int(image.frame)]
      #expect(image.series == 9 && image.width == width && image.height == height && image.bits == size * 8)
      #expect(image.pixels == sent[Int(image.frame)], "pixels of image \(image.frame)")
    }
    #expect(run.stop())
    #expect(run.errors("live") == 0 && run.errors("det") == 0)
  }

  static func swapped(_ bytes: [UInt8], size: Int) -> [UInt8] {
    stride(from: 0, to: bytes.count, by: size).flatMap { bytes[$0..<$0 + size].reversed() }
  }

  /// The rest of the API: monitor (with timeout), list, one image, drops with
  /// either discard policy, clear, initialize, disabled mode and status.
  @Test func bufferCommandsAndStatus() throws {
    let dcu = try FakeDCU()
    let port = ForwardTests.freePort()
    let run = try Self.start(dcu, port: port, options: "\n    buffer_size: 3")
    let api = Self.api
    #expect(
      ZMQSourceTests.waitUntil {
        (try? Self.request(port, "GET", "\(api)/config/buffer_size"))?.status == 200
      })
    #expect(
      try Self.request(port, "GET", "\(api)/config/buffer_size").value as? Int == 3, "the node's buffer_size")
    #expect(try Self.request(port, "GET", "\(api)/images/monitor").status == 408, "nothing yet, no wait")
    func send(_ frames: Range<Int>, series: Int = 1) throws {
      for frame in frames {
        try dcu.send(
          Self.v1Image(
            series: series, frame: frame, width: 8, height: 2, dtype: "uint16", encoding: "bs16-lz4<",
            pixels: Self.pixels(series: series, frame: frame, count: 16, elementSize: 2)))
      }
    }
    func list() throws -> String { try Self.request(port, "GET", "\(api)/images").text }
    func waitForList(_ expected: String) -> Bool {
      ZMQSourceTests.waitUntil { (try? list()) == expected }
    }
    func status(_ key: String) throws -> Any? { try Self.request(port, "GET", "\(api)/status/\(key)").value }

    // A monitor request waiting for the first image.
    let waited = Mutex<Reply?>(nil)
    let waiter = Thread {
      waited.withLock { $0 = try? Self.request(port, "GET", "\(api)/images/monitor?timeout=10000") }
    }
    waiter.start()
    Thread.sleep(forTimeInterval: 0.2)
    try dcu.send([FakeDCU.v1Header(series: 1, detail: "none")])
    try send(0..<1)
    #expect(
      ZMQSourceTests.waitUntil { waited.withLock { $0 } != nil }, "the waiting monitor request is answered")
    let first = try #require(waited.withLock { $0 })
    #expect(try first.status == 200 && Self.readTIFF(first.body).frame == 0)

    try send(1..<5)
    #expect(waitForList("[[1, 2], [1, 3], [1, 4]]"), "the newest 3 of 5, oldest first")
    #expect(try status("dropped") as? Int == 2)
    #expect(try status("buffer_fill_level") as? Int == 3)
    #expect(try status("state") as? String == "overflow")
    let monitor = try Self.request(port, "GET", "\(api)/images/monitor")
    #expect(try monitor.status == 200 && Self.readTIFF(monitor.body).frame == 4, "the newest, not consumed")
    let again = try Self.request(port, "GET", "\(api)/images/monitor")
    #expect(again.body == monitor.body)
    let one = try Self.request(port, "GET", "\(api)/images/1/3")
    #expect(try one.status == 200 && Self.readTIFF(one.body).frame == 3)
    #expect(try Self.request(port, "GET", "\(api)/images/1/0").status == 404, "no longer held")
    #expect(try list() == "[[1, 2], [1, 3], [1, 4]]", "monitor and by-id requests take nothing")

    #expect(
      try Self.request(port, "PUT", "\(api)/config/discard_new", json: "{\"value\": true}").status == 200)
    try send(5..<7)
    #expect(ZMQSourceTests.waitUntil { (try? status("dropped")) as? Int == 4 })
    #expect(try list() == "[[1, 2], [1, 3], [1, 4]]", "with discard_new the new images are dropped")

    #expect(try Self.request(port, "PUT", "\(api)/config/buffer_size", json: "{\"value\": 1}").status == 200)
    #expect(try list() == "[[1, 4]]", "a smaller buffer keeps the newest")
    #expect(try status("dropped") as? Int == 6)

    #expect(try Self.request(port, "PUT", "\(api)/command/clear").status == 200)
    #expect(try list() == "[]")
    #expect(try status("state") as? String == "normal")

    #expect(
      try Self.request(port, "PUT", "\(api)/config/mode", json: "{\"value\": \"disabled\"}").status == 200)
    try send(7..<8)
    try send(0..<1, series: 2)  // a marker: once it is seen, frame 7 was seen too
    // Into the forward so far: 1 series start, 8 images, a series end and start, 1 image.
    #expect(
      ZMQSourceTests.waitUntil {
        run.runtime.metrics.node("live")?.framesIn.load(ordering: .relaxed) ?? 0 >= 12
      })
    #expect(try list() == "[]", "a disabled monitor keeps nothing")
    #expect(try Self.request(port, "GET", "\(api)/images/next").status == 408)

    #expect(try Self.request(port, "PUT", "\(api)/command/initialize").status == 200)
    #expect(try Self.request(port, "GET", "\(api)/config/mode").value as? String == "enabled")
    #expect(try Self.request(port, "GET", "\(api)/config/discard_new").value as? Bool == false)
    #expect(try Self.request(port, "GET", "\(api)/config/buffer_size").value as? Int == 3)
    #expect(try status("dropped") as? Int == 0)
    #expect(try status("keys") as? [String] == ["buffer_fill_level", "dropped", "error", "state"])
    #expect(
      try Self.request(port, "GET", "\(api)/config/keys").value as? [String] == [
        "buffer_size", "discard_new", "mode",
      ])
    #expect(run.stop())
    #expect(run.errors("live") == 0, "nothing above is a bad request")
  }

  /// Images that cannot be served are counted at arrival (no shape) or when asked for (corrupt data).
  @Test func badImagesAreCountedAndSkipped() throws {
    let dcu = try FakeDCU()
    let port = ForwardTests.freePort()
    let run = try Self.start(dcu, port: port)
    try Self.ondaStart(port, bufferSize: 8)
    try dcu.send([FakeDCU.v1Header(series: 1, detail: "none")])
    let pixels = Self.pixels(series: 1, frame: 0, count: 64, elementSize: 2)
    var corrupt = Self.v1Image(
      series: 1, frame: 0, width: 8, height: 8, dtype: "uint16", encoding: "bs16-lz4<", pixels: pixels)
    corrupt[2] = Array(corrupt[2].prefix(14)) + [UInt8](repeating: 0xff, count: corrupt[2].count - 14)
    try dcu.send(corrupt)
    try dcu.send(
      Self.v1Image(
        series: 1, frame: 1, width: 8, height: 8, dtype: "float64", encoding: "<",
        pixels: pixels + pixels + pixels + pixels))
    try dcu.send(
      Self.v1Image(
        series: 1, frame: 2, width: 8, height: 8, dtype: "uint16", encoding: "bs16-lz4<", pixels: pixels))
    #expect(
      ZMQSourceTests.waitUntil {
        run.runtime.metrics.node("live")?.framesIn.load(ordering: .relaxed) ?? 0 >= 4
      })
    let reply = try Self.request(port, "GET", "\(Self.api)/images/next")
    #expect(reply.status == 200, "the corrupt image is skipped for the next good one")
    #expect(try Self.readTIFF(reply.body).frame == 2)
    let errors = try Self.request(port, "GET", "\(Self.api)/status/error").value as? [String] ?? []
    #expect(errors.count == 2, "\(errors)")
    #expect(run.stop())
    #expect(run.errors("live") == 2)
  }

  /// Hostile clients get a clear answer, are counted, and the server stays up.
  @Test func hostileRequestsAreAnsweredAndCounted() throws {
    let dcu = try FakeDCU()
    let port = ForwardTests.freePort()
    let run = try Self.start(dcu, port: port)
    let api = Self.api
    #expect(
      ZMQSourceTests.waitUntil { (try? Self.request(port, "GET", "\(api)/config/mode"))?.status == 200 })
    let cases: [(String, String, String?, [UInt8]?, Int)] = [
      ("GET", "/", nil, nil, 404),
      ("GET", "/etc/passwd", nil, nil, 404),
      ("GET", "/monitor/api/1.6.0/config/mode", nil, nil, 404),
      ("GET", "\(api)/config/nothing", nil, nil, 404),
      ("GET", "\(api)/images/1/x", nil, nil, 404),
      ("GET", "\(api)/../../config/mode", nil, nil, 404),
      ("DELETE", "\(api)/config/mode", nil, nil, 405),
      ("POST", "\(api)/images/next", nil, nil, 405),
      ("GET", "\(api)/command/clear", nil, nil, 405),
      ("PUT", "\(api)/images/next", "{}", nil, 405),
      ("PUT", "\(api)/config/mode", "{\"value\": ", nil, 400),
      ("PUT", "\(api)/config/mode", "", nil, 400),
      ("PUT", "\(api)/config/mode", "[\"enabled\"]", nil, 400),
      ("PUT", "\(api)/config/mode", "{\"valeur\": \"enabled\"}", nil, 400),
      ("PUT", "\(api)/config/mode", "{\"value\": 1}", nil, 400),
      ("PUT", "\(api)/config/mode", "{\"value\": \"maybe\"}", nil, 400),
      ("PUT", "\(api)/config/discard_new", "{\"value\": 1}", nil, 400),
      ("PUT", "\(api)/config/discard_new", "{\"value\": \"false\"}", nil, 400),
      ("PUT", "\(api)/config/buffer_size", "{\"value\": true}", nil, 400),
      ("PUT", "\(api)/config/buffer_size", "{\"value\": 2.5}", nil, 400),
      ("PUT", "\(api)/config/buffer_size", "{\"value\": 0}", nil, 400),
      ("PUT", "\(api)/config/buffer_size", "{\"value\": 99999999999}", nil, 400),
      ("GET", "\(api)/images/monitor?timeout=soon", nil, nil, 400),
      ("PUT", "\(api)/config/mode", nil, [UInt8](repeating: 0x7b, count: 1 << 20), 413),
      ("PUT", "\(api)/config/mode", nil, [UInt8](repeating: 0x20, count: (64 << 10) + 1), 413),
    ]
    for (method, path, json, body, expected) in cases {
      let reply = try Self.request(port, method, path, json: json, body: body)
      #expect(reply.status == expected, "\(method) \(path): \(reply.status) \(reply.text)")
      #expect(reply.headers["content-length"] != nil)
      if expected == 405 { #expect(reply.headers["allow"] != nil) }
    }
    // A chunked body that grows past the limit.
    let chunked = try Self.parse(
      Self.exchange(
        port,
        raw: Array(
          ("PUT \(api)/config/mode HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + String(repeating: "8000\r\n" + String(repeating: " ", count: 0x8000) + "\r\n", count: 3)
            + "0\r\n\r\n")
            .utf8)))
    #expect(chunked.status == 413)
    // Not HTTP at all, and a header too large: NIO answers 400 and closes.
    for raw in [
      Array("\u{0}\u{1}garbage\r\n\r\n".utf8),
      (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 37) },
      Array(
        "GET \(api)/config/mode HTTP/1.1\r\nX-Big: \(String(repeating: "a", count: 100_000))\r\n\r\n".utf8),
    ] {
      let answer = try Self.exchange(port, raw: raw)
      #expect(String(decoding: answer.prefix(12), as: UTF8.self) == "HTTP/1.1 400")
    }
    let expectedErrors = cases.count + 1 + 3
    #expect(ZMQSourceTests.waitUntil { run.errors("live") == expectedErrors }, "\(run.errors("live")) errors")

    // Many clients at once, and a keep-alive connection with two requests.
    let ok = Atomic<Int>(0)
    DispatchQueue.concurrentPerform(iterations: 32) { _ in
      for _ in 0..<5 where (try? Self.request(port, "GET", "\(api)/status/state"))?.status == 200 {
        ok.add(1, ordering: .relaxed)
      }
    }
    #expect(ok.load(ordering: .relaxed) == 160)
    let pair = try Self.exchange(
      port,
      raw: Array(
        ("GET \(api)/config/mode HTTP/1.1\r\nHost: x\r\n\r\n"
          + "GET \(api)/images/next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").utf8))
    let text = String(decoding: pair, as: UTF8.self)
    #expect(text.hasPrefix("HTTP/1.1 200") && text.contains("HTTP/1.1 408"))
    #expect(try Self.request(port, "GET", "\(api)/config/mode").status == 200, "still up")
    #expect(run.errors("live") == expectedErrors)

    #expect(run.stop())
    #expect(run.runtime.failures.isEmpty)
    #expect(throws: ClientError.self, "the server stops with its input") {
      try Self.request(port, "GET", "\(api)/config/mode")
    }
  }

  /// Validation: the monitor serves at the root, under a plain version, and its options need its format.
  @Test func validationChecksTheMonitorOptions() {
    let result = GraphValidator(catalog: NodeTypes.catalog).validate(
      text: """
        nodes:
          det: {type: generate, size: 100}
          a: {type: forward, input: det, format: simplon-monitor, listen: "http://127.0.0.1:8080/eiger"}
          b: {type: forward, input: det, format: simplon-monitor, listen: "http://127.0.0.1:8081", api_version: "1.8/x"}
          c: {type: forward, input: det, listen: "tcp://127.0.0.1:8082", buffer_size: 3}
          d: {type: forward, input: det, format: simplon-monitor, listen: "http://*:8083", buffer_size: 0}
        """, file: "t.yaml")
    let errors = result.diagnostics.sorted.filter { $0.severity == .error }.map(\.message)
    #expect(errors.count == 4, "\(errors)")
    #expect(errors.contains { $0.contains("leave out the path '/eiger'") })
    #expect(errors.contains { $0.contains("'1.8/x' is not an API version") })
    #expect(
      errors.contains {
        $0.contains("'buffer_size'") && $0.contains("only applies when format is 'simplon-monitor'")
      })
  }

  /// A graph whose listen port is taken fails to start the forward, and says why.
  @Test func aTakenPortFailsTheRun() throws {
    let dcu = try FakeDCU()
    let port = ForwardTests.freePort()
    let first = try Self.start(dcu, port: port)
    #expect(
      ZMQSourceTests.waitUntil { (try? Self.request(port, "GET", "\(Self.api)/config/mode"))?.status == 200 })
    let second = try Self.start(dcu, port: port)
    #expect(second.runtime.wait(timeoutNanos: 10_000_000_000), "the failed forward ends the run")
    #expect(
      second.runtime.failures.contains { $0.contains("cannot listen on http://127.0.0.1:\(port)") },
      "\(second.runtime.failures)")
    #expect(first.stop())
  }
}
