import Foundation
import HidraGraph
import HidraRuntime
import Testing
import ZeroMQ

@testable import HidraNodes

/// The `eiger-stream` source, fed by `FakeDCU` in every intake mode, with
/// sequence problems and with a corpus of malformed messages.
@Suite struct EigerStreamTests {
  typealias Run = ZMQSourceTests.Run
  typealias Message = FakeDCU.Message

  static func source(_ dcu: borrowing FakeDCU, version: String) throws -> Run {
    try Run(
      """
      nodes:
        det: {type: eiger-stream, endpoint: "\(dcu.endpoint)", version: "\(version)"}
        rec: {type: record, input: det}
      """)
  }

  /// Waits until the recorder holds a series-end of `series`.
  static func waitForEnd(_ run: Run, series: Int, seconds: Double = 10) -> Bool {
    ZMQSourceTests.waitUntil(seconds: seconds) {
      run.recorder.frames(of: "rec").contains { $0.kind == .seriesEnd && $0.meta.series == series }
    }
  }

  static func bytes(_ frame: Frame) -> [UInt8] { ZMQSourceTests.bytes(frame) }

  // MARK: - Stream v1

  struct V1Case: Sendable, CustomTestStringConvertible {
    var detail: String
    var version: String
    var testDescription: String { "header_detail \(detail), version \(version)" }
  }

  @Test(arguments: [
    V1Case(detail: "none", version: "1"), V1Case(detail: "basic", version: "1"),
    V1Case(detail: "all", version: "1"), V1Case(detail: "all", version: "auto"),
    V1Case(detail: "basic", version: "auto"),
  ])
  func streamV1SeriesArrivesIntact(_ item: V1Case) throws {
    let dcu = try FakeDCU()
    let run = try Self.source(dcu, version: item.version)
    let series = 42
    let header = FakeDCU.v1Header(series: series, detail: item.detail, appendix: item.detail == "all")
    let blobs = (0..<3).map { FakeDCU.blob(series: series, frame: $0, size: 100 + 37 * $0) }
    let md5 = "0123456789ABCDEF0123456789abcdef"
    let bigAppendix = [UInt8](repeating: UInt8(ascii: "a"), count: 5000)
    var messages: [Message] = [header]
    messages.append(
      FakeDCU.v1Image(series: series, frame: 0, blob: blobs[0], encoding: "bs16-lz4<", hash: md5))
    messages.append(
      FakeDCU.v1Image(
        series: series, frame: 1, blob: blobs[1], encoding: "lz4<", hash: "not-md5",
        appendix: FakeDCU.text("{\"shot\":1}")))
    messages.append(
      FakeDCU.v1Image(series: series, frame: 2, blob: blobs[2], encoding: "<", appendix: bigAppendix))
    messages.append(FakeDCU.v1End(series: series))
    try dcu.send(messages)
    #expect(Self.waitForEnd(run, series: series), "the series end arrives")
    #expect(run.stop())
    #expect(run.runtime.failures.isEmpty, "\(run.runtime.failures)")
    #expect(run.errors("det") == 0)

    let frames = run.recorder.frames(of: "rec")
    #expect(frames.map(\.kind) == [.seriesStart, .data, .data, .data, .seriesEnd])
    guard frames.count == 5 else { return }
    #expect(frames.map(\.meta.id) == [1, 2, 3, 4, 5])
    #expect(frames.allSatisfy { $0.meta.series == series })

    let start = frames[0]
    #expect(start.meta.contentType == "application/json")
    #expect(start.parts.map { Array($0.bytes) } == Array(header.dropFirst()), "header parts untouched")
    var attributes = ["header_detail": item.detail, "dheader": String(decoding: header[0], as: UTF8.self)]
    if item.detail != "none" {
      attributes.merge([
        "x_pixels_in_detector": "4", "y_pixels_in_detector": "3", "bit_depth_image": "16", "nimages": "3",
        "ntrigger": "1", "count_time": "0.0099999", "frame_time": "0.01",
      ]) { first, _ in first }
    }
    #expect(start.meta.attributes == attributes)

    for (index, frame) in frames[1...3].enumerated() {
      #expect(frame.parts.count == 1)
      #expect(Self.bytes(frame) == blobs[index], "blob of frame \(index) byte for byte")
      #expect(frame.meta.frame == index)
      #expect(frame.meta.shape == [4, 3] && frame.meta.dtype == "uint16")
      #expect(frame.meta.attributes["start_time"] == String(1000 + index * 10))
      #expect(frame.meta.attributes["stop_time"] == String(1009 + index * 10))
      #expect(frame.meta.attributes["real_time"] == "9")
    }
    let (d0, d1, d2) = (frames[1].meta, frames[2].meta, frames[3].meta)
    #expect(d0.encoding == "bs16-lz4" && d0.name == "series_42/frame_000000.bslz4")
    #expect(d0.checksums == ["md5": md5.lowercased()] && d0.attributes["hash"] == nil)
    #expect(d1.encoding == "lz4" && d1.name == "series_42/frame_000001.lz4")
    #expect(d1.checksums.isEmpty && d1.attributes["hash"] == "not-md5")
    #expect(d1.attributes["appendix"] == "{\"shot\":1}")
    #expect(d2.encoding == "raw" && d2.name == "series_42/frame_000002.raw")
    #expect(d2.attributes["appendix"] == nil, "a large appendix is left out")
    #expect(frames[4].meta.attributes == ["frames": "3"])
    #expect(Self.bytes(frames[4]) == FakeDCU.v1End(series: series)[0], "the end message untouched")
  }

  @Test func v1EncodingGrammar() {
    let cases: [(String, String?)] = [
      ("bs32-lz4<", "bs32-lz4"), ("bs16-lz4<", "bs16-lz4"), ("bs8lz4>", "bs8-lz4"), ("lz4<", "lz4"),
      ("<", "raw"), ("", "raw"), ("bs12-lz4<", nil), ("bs16<", nil), ("zstd", nil), ("bs-lz4", nil),
    ]
    for (text, expected) in cases {
      #expect(EigerStreamSource.Body.v1Encoding(text)?.0 == expected, "\(text)")
    }
  }

  // MARK: - Stream v2

  @Test(arguments: ["2", "auto"])
  func streamV2SeriesArrivesIntact(_ version: String) throws {
    let dcu = try FakeDCU()
    let run = try Self.source(dcu, version: version)
    let series = 7
    let raw = FakeDCU.blob(series: series, frame: 0, size: 24)
    let packed = FakeDCU.blob(series: series, frame: 1, size: 19)
    let messages = [
      FakeDCU.v2Start(series: series, images: 2),
      FakeDCU.v2Image(series: series, image: 0, data: raw, compressed: false),
      FakeDCU.v2Image(series: series, image: 1, data: packed, compressed: true),
      FakeDCU.v2End(series: series),
    ]
    try dcu.send(messages.map { [$0] })
    #expect(Self.waitForEnd(run, series: series), "the series end arrives")
    #expect(run.stop())
    #expect(run.runtime.failures.isEmpty, "\(run.runtime.failures)")
    #expect(run.errors("det") == 0)

    let frames = run.recorder.frames(of: "rec")
    #expect(frames.map(\.kind) == [.seriesStart, .data, .data, .seriesEnd])
    guard frames.count == 4 else { return }
    for (frame, message) in zip(frames.prefix(3), messages) {
      #expect(Self.bytes(frame) == message, "the whole CBOR message byte for byte")
      #expect(frame.meta.contentType == "application/cbor" && frame.meta.series == series)
    }
    #expect(Self.bytes(frames[3]) == messages[3] && frames[3].meta.attributes == ["frames": "2"])
    #expect(frames[3].meta.contentType == "application/cbor")
    let start = frames[0].meta.attributes
    #expect(start["image_size_x"] == "4" && start["image_size_y"] == "3" && start["image_dtype"] == "uint16")
    #expect(start["number_of_images"] == "2" && start["count_time"] == "0.0099999")
    #expect(start["series_unique_id"] == "01HZ-series-7")
    for (index, frame) in frames[1...2].enumerated() {
      let meta = frame.meta
      #expect(meta.frame == index && meta.encoding == "cbor")
      #expect(meta.name == "series_7/frame_00000\(index).cbor")
      #expect(meta.shape == [4, 3] && meta.dtype == "uint16")
      #expect(meta.attributes["channel"] == "threshold_1")
      #expect(meta.attributes["start_time"] == String(1_000_000_000 + index * 1_000_000))
      #expect(meta.attributes["real_time"] == "10000000")
    }
    #expect(frames[1].meta.attributes["data_encoding"] == "raw")
    #expect(frames[2].meta.attributes["data_encoding"] == "bs16-lz4")
  }

  /// Several CBOR messages in one multipart message each count as a message.
  @Test func streamV2SeveralMessagesInOneMultipart() throws {
    let dcu = try FakeDCU()
    let run = try Self.source(dcu, version: "2")
    let data = FakeDCU.blob(series: 3, frame: 0, size: 24)
    try dcu.send([
      FakeDCU.v2Start(series: 3, images: 1),
      FakeDCU.v2Image(series: 3, image: 0, data: data, compressed: false),
      FakeDCU.v2End(series: 3),
    ])
    #expect(Self.waitForEnd(run, series: 3))
    #expect(run.stop())
    #expect(run.errors("det") == 0)
    #expect(run.recorder.frames(of: "rec").map(\.kind) == [.seriesStart, .data, .seriesEnd])
  }

  /// `version: auto` counts messages it cannot recognize and decides on the first it can.
  @Test(arguments: [1, 2])
  func autoDetectionSkipsUnrecognizableMessages(_ version: Int) throws {
    let dcu = try FakeDCU()
    let run = try Self.source(dcu, version: "auto")
    try dcu.send([[FakeDCU.text("hello")], [[0xd9, 0xd9]], [[]]])
    let messages: [Message] =
      version == 1
      ? [FakeDCU.v1Header(series: 4, detail: "none"), FakeDCU.v1End(series: 4)]
      : [[FakeDCU.v2Start(series: 4, images: 0)], [FakeDCU.v2End(series: 4)]]
    try dcu.send(messages)
    // Once decided, a message of the other version is malformed.
    try dcu.send(version == 1 ? [[FakeDCU.v2End(series: 4)]] : [FakeDCU.v1End(series: 4)])
    try dcu.send(
      version == 1
        ? [FakeDCU.v1Header(series: 5, detail: "none"), FakeDCU.v1End(series: 5)]
        : [[FakeDCU.v2Start(series: 5, images: 0)], [FakeDCU.v2End(series: 5)]])
    #expect(Self.waitForEnd(run, series: 5))
    #expect(run.stop())
    #expect(run.errors("det") == 4)
    #expect(run.recorder.frames(of: "rec").map(\.meta.series) == [4, 4, 5, 5])
  }

  // MARK: - Sequence problems

  @Test func streamV1FrameGapAndMissingSeriesEnd() throws {
    let dcu = try FakeDCU()
    let run = try Self.source(dcu, version: "1")
    func image(_ series: Int, _ frame: Int) -> Message {
      FakeDCU.v1Image(
        series: series, frame: frame, blob: FakeDCU.blob(series: series, frame: frame, size: 50))
    }
    try dcu.send([
      FakeDCU.v1Header(series: 1, detail: "none"), image(1, 0), image(1, 1), image(1, 3),  // frame-gap
      FakeDCU.v1Header(series: 2, detail: "basic"),  // missing-series-end (series 1)
      image(2, 0), image(3, 0),  // missing-series-end (2) and missing-series-start (3)
      FakeDCU.v1End(series: 9),  // unexpected-series-end
      FakeDCU.v1End(series: 3),
    ])
    #expect(Self.waitForEnd(run, series: 3))
    #expect(run.stop())
    #expect(run.runtime.failures.isEmpty, "\(run.runtime.failures)")
    #expect(run.errors("det") == 5)
    let frames = run.recorder.frames(of: "rec")
    let summary = frames.map {
      "\($0.kind.rawValue):\($0.meta.series):\($0.meta.attributes["synthetic"] ?? "")"
    }
    #expect(
      summary == [
        "series-start:1:", "data:1:", "data:1:", "data:1:", "series-end:1:true", "series-start:2:", "data:2:",
        "series-end:2:true", "series-start:3:true", "data:3:", "series-end:3:",
      ])
    #expect(
      frames.filter { $0.kind == .data }.map(\.meta.frame) == [0, 1, 3, 0, 0], "frames still delivered")
    #expect(frames.filter { $0.kind == .seriesEnd }.map { $0.meta.attributes["frames"] } == ["3", "1", "1"])
    #expect(frames.map(\.meta.id) == Array(1...UInt64(frames.count)))
  }

  @Test func streamV2FrameGapAndSeriesLeftOpenAtStop() throws {
    let dcu = try FakeDCU()
    let run = try Self.source(dcu, version: "2")
    let data = [UInt8](repeating: 1, count: 24)
    try dcu.send(
      [
        FakeDCU.v2Start(series: 5, images: 3),
        FakeDCU.v2Image(series: 5, image: 0, data: data, compressed: false),
        FakeDCU.v2Image(series: 5, image: 2, data: data, compressed: true),
      ].map { [$0] })
    #expect(ZMQSourceTests.waitUntil { run.recorder.data(of: "rec").count == 2 })
    #expect(run.errors("det") == 1)
    #expect(run.stop())
    let frames = run.recorder.frames(of: "rec")
    #expect(frames.map(\.kind) == [.seriesStart, .data, .data, .seriesEnd])
    #expect(
      frames.last?.meta.attributes == ["frames": "2", "synthetic": "true"], "closed when the source stops")
    #expect(run.errors("det") == 1)
  }

  // MARK: - Malformed input

  struct Case {
    var name: String
    var messages: [Message]
    var errors: Int
  }

  static func noise(_ count: Int, seed: UInt64) -> [Message] {
    var random = ZMQSourceTests.SplitMix(state: seed)
    return (0..<count).map { _ in
      (0...random.next(below: 3)).map { _ in
        (0..<random.next(below: 600)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
      }
    }
  }

  static func v1Corpus() -> [Case] {
    let t = FakeDCU.text
    let blob = FakeDCU.blob(series: 1, frame: 0, size: 40)
    let image = FakeDCU.v1Image(series: 1, frame: 0, blob: blob)
    return [
      Case(name: "not JSON", messages: [[t("hello")]], errors: 1),
      Case(name: "bad JSON", messages: [[t("{\"htype\":\"dimage-1.0\",")]], errors: 1),
      Case(name: "JSON array", messages: [[t("[1,2]")]], errors: 1),
      Case(name: "empty part", messages: [[[]]], errors: 1),
      Case(name: "no htype", messages: [[t("{\"series\":1}")]], errors: 1),
      Case(name: "unknown htype", messages: [[t("{\"htype\":\"dfoo-1.0\",\"series\":1}")]], errors: 1),
      Case(
        name: "series as text", messages: [[t("{\"htype\":\"dheader-1.0\",\"series\":\"1\"}")]], errors: 1),
      Case(
        name: "series as boolean", messages: [[t("{\"htype\":\"dseries_end-1.0\",\"series\":true}")]],
        errors: 1),
      Case(
        name: "basic header without config",
        messages: [[t("{\"htype\":\"dheader-1.0\",\"series\":1,\"header_detail\":\"basic\"}")]], errors: 1),
      Case(
        name: "config not JSON", messages: [[FakeDCU.v1Header(series: 1, detail: "basic")[0], t("config")]],
        errors: 1),
      Case(name: "truncated image: header only", messages: [Array(image.prefix(1))], errors: 1),
      Case(name: "truncated image: two parts", messages: [Array(image.prefix(2))], errors: 1),
      Case(
        name: "image without frame",
        messages: [[t("{\"htype\":\"dimage-1.0\",\"series\":1}")] + image.dropFirst()], errors: 1),
      Case(name: "second part not dimage_d", messages: [[image[0], image[3], blob, image[3]]], errors: 1),
      Case(name: "fourth part not dconfig", messages: [[image[0], image[1], blob, image[1]]], errors: 1),
      Case(
        name: "blob larger than size", messages: [FakeDCU.v1Image(series: 1, frame: 0, blob: blob, size: 39)],
        errors: 1),
      Case(
        name: "blob smaller than size",
        messages: [FakeDCU.v1Image(series: 1, frame: 0, blob: blob, size: 41)], errors: 1),
      Case(
        name: "unknown encoding",
        messages: [FakeDCU.v1Image(series: 1, frame: 0, blob: blob, encoding: "zstd<")], errors: 1),
      Case(name: "series end with no series open", messages: [FakeDCU.v1End(series: 1)], errors: 1),
      Case(name: "a CBOR message", messages: [[FakeDCU.v2End(series: 1)]], errors: 1),
      Case(
        name: "deeply nested JSON",
        messages: [[t(String(repeating: "[", count: 20_000) + String(repeating: "]", count: 20_000))]],
        errors: 1),
      Case(name: "random bytes", messages: noise(100, seed: 11), errors: 100),
    ]
  }

  static func v2Corpus() -> [Case] {
    let prefix: [UInt8] = [0xd9, 0xd9, 0xf7]
    let image = FakeDCU.v2Image(series: 1, image: 0, data: [1, 2, 3, 4], compressed: true)
    func with(_ build: (inout CBORWriter) -> Void) -> [UInt8] {
      var w = CBORWriter()
      w.selfDescribe()
      build(&w)
      return w.bytes
    }
    let truncated = (0..<image.count).map { [Array(image.prefix($0))] }
    return [
      Case(name: "JSON text", messages: [[FakeDCU.text("{\"type\":\"start\"}")]], errors: 1),
      Case(
        name: "no self-describe tag", messages: [[Array(FakeDCU.v2End(series: 1).dropFirst(3))]], errors: 1),
      Case(name: "not a map", messages: [[prefix + [0x83, 1, 2, 3]]], errors: 1),
      Case(
        name: "text length beyond the buffer", messages: [[prefix + [0xa1, 0x64, 0x74, 0x79]]], errors: 1),
      Case(
        name: "map count beyond the buffer",
        messages: [[prefix + [0xbb] + [UInt8](repeating: 0xff, count: 8)]], errors: 1),
      Case(
        name: "byte string length 2^63",
        messages: [[prefix + [0xa1, 0x61, 0x78, 0x5b, 0x80, 0, 0, 0, 0, 0, 0, 0]]],
        errors: 1),
      Case(
        name: "array count 2^32 - 1",
        messages: [[prefix + [0xa1, 0x61, 0x78, 0x9a, 0xff, 0xff, 0xff, 0xff, 0]]], errors: 1),
      Case(name: "indefinite map without break", messages: [[prefix + [0xbf, 0x61, 0x78, 0x01]]], errors: 1),
      Case(
        name: "reserved additional information", messages: [[prefix + [0xa1, 0x61, 0x78, 0x1c]]], errors: 1),
      Case(name: "stray break", messages: [[prefix + [0xa1, 0x61, 0x78, 0xff]]], errors: 1),
      Case(
        name: "deep nesting",
        messages: [[prefix + [0xa1, 0x61, 0x78] + [UInt8](repeating: 0x81, count: 200) + [0]]], errors: 1),
      Case(name: "truncated image messages", messages: truncated, errors: truncated.count),
      Case(
        name: "unknown type",
        messages: [
          [
            with {
              $0.map(2); $0.text("type"); $0.text("foo"); $0.text("series_id"); $0.uint(1)
            }
          ]
        ], errors: 1),
      Case(
        name: "no type",
        messages: [
          [
            with {
              $0.map(1); $0.text("series_id"); $0.uint(1)
            }
          ]
        ], errors: 1),
      Case(
        name: "image without image_id",
        messages: [
          [
            with {
              $0.map(2); $0.text("type"); $0.text("image"); $0.text("series_id"); $0.uint(1)
            }
          ]
        ],
        errors: 1),
      Case(
        name: "negative series_id",
        messages: [
          [
            with {
              $0.map(2); $0.text("type"); $0.text("end"); $0.text("series_id"); $0.head(1, 4)
            }
          ]
        ],
        errors: 1),
      Case(
        name: "series_id above Int",
        messages: [
          [
            with {
              $0.map(2); $0.text("type"); $0.text("end"); $0.text("series_id"); $0.uint(.max)
            }
          ]
        ],
        errors: 1),
      Case(
        name: "unknown compression",
        messages: [
          [
            with {
              $0.map(4); $0.text("type"); $0.text("image"); $0.text("series_id"); $0.uint(1);
              $0.text("image_id")
              $0.uint(0); $0.text("data"); $0.map(1); $0.text("c"); $0.tag(40); $0.array(2); $0.array(1);
              $0.uint(2)
              $0.tag(56500); $0.array(3); $0.text("zstd"); $0.uint(2); $0.byteString([1, 2])
            }
          ]
        ], errors: 1),
      Case(
        name: "text that is not UTF-8",
        messages: [[prefix + [0xa1, 0x64, 0x74, 0x79, 0x70, 0x65, 0x62, 0xff, 0xfe]]], errors: 1),
      Case(name: "series end with no series open", messages: [[FakeDCU.v2End(series: 1)]], errors: 1),
      Case(name: "random bytes", messages: noise(100, seed: 12), errors: -1),
    ]
  }

  @Test(arguments: [1, 2])
  func malformedMessagesAreCountedAndDropped(_ version: Int) throws {
    let dcu = try FakeDCU()
    let run = try Self.source(dcu, version: String(version))
    defer { _ = run.stop() }
    var series = 1000
    /// A valid, empty series: when its end arrives, everything sent before was handled.
    func sync(_ name: String) throws -> Bool {
      series += 1
      let messages: [Message] =
        version == 1
        ? [FakeDCU.v1Header(series: series, detail: "basic"), FakeDCU.v1End(series: series)]
        : [[FakeDCU.v2Start(series: series, images: 0)], [FakeDCU.v2End(series: series)]]
      try dcu.send(messages)
      guard Self.waitForEnd(run, series: series) else {
        Issue.record("\(name): the source stopped taking messages")
        return false
      }
      return true
    }
    #expect(try sync("before the corpus"))
    var expected = 0
    for item in version == 1 ? Self.v1Corpus() : Self.v2Corpus() {
      let before = run.errors("det")
      try dcu.send(item.messages)
      guard try sync(item.name) else { return }
      // Random parts each count once (v2: every part is a message).
      let errors = item.errors >= 0 ? item.errors : item.messages.reduce(0) { $0 + $1.count }
      #expect(run.errors("det") - before == errors, "case '\(item.name)'")
      expected += errors
    }
    #expect(run.stop())
    #expect(run.runtime.failures.isEmpty, "\(run.runtime.failures)")
    #expect(run.errors("det") == expected)
    let frames = run.recorder.frames(of: "rec")
    #expect(frames.count == 2 * (series - 1000), "only the valid series arrive")
    #expect(frames.allSatisfy { $0.meta.attributes["synthetic"] == nil })
  }

  // MARK: - Setup

  @Test func stopsPromptlyWithoutADetector() throws {
    let port = ForwardTests.freePort()
    let run = try Run(
      """
      nodes:
        det: {type: eiger-stream, endpoint: "tcp://127.0.0.1:\(port)"}
        rec: {type: record, input: det}
      """)
    Thread.sleep(forTimeInterval: 0.3)
    let start = Date()
    #expect(run.stop(), "the source did not stop within 5 s")
    #expect(Date().timeIntervalSince(start) < 2)
    #expect(run.runtime.failures.isEmpty, "\(run.runtime.failures)")
    #expect(run.errors("det") == 0)
    #expect(run.recorder.frames(of: "rec").isEmpty)
  }

  // MARK: - api: the stream's SIMPLON status

  /// Sends one series at a time until a series start carries the stream status
  /// (read in the background, never waited for); returns that start.
  static func startWithStatus(_ dcu: borrowing FakeDCU, _ run: Run) throws -> Frame? {
    for series in 1...50 {
      try dcu.send([FakeDCU.v1Header(series: series, detail: "none"), FakeDCU.v1End(series: series)])
      guard waitForEnd(run, series: series) else { return nil }
      let start = run.recorder.frames(of: "rec").last { $0.kind == .seriesStart && $0.meta.series == series }
      if start?.meta.attributes["stream_state"] != nil { return start }
    }
    return nil
  }

  @Test func apiStatusBecomesSeriesStartAttributes() throws {
    let server = try FakeSimplon()
    defer { server.stop() }
    let dcu = try FakeDCU()
    let run = try Run(
      """
      nodes:
        det: {type: eiger-stream, endpoint: "\(dcu.endpoint)", version: "1", api: "\(server.url)"}
        rec: {type: record, input: det}
      """)
    let start = try Self.startWithStatus(dcu, run)
    #expect(run.stop())
    #expect(run.runtime.failures.isEmpty, "\(run.runtime.failures)")
    #expect(run.errors("det") == 0)
    let attributes = try #require(start).meta.attributes
    #expect(attributes["stream_state"] == "ready" && attributes["stream_mode"] == "enabled")
    #expect(attributes["stream_format"] == "legacy" && attributes["stream_header_detail"] == "all")
    #expect(attributes["stream_dropped"] == "0")
    for key in ["status/state", "config/mode", "config/format", "config/header_detail", "status/dropped"] {
      #expect(server.count("GET /stream/api/1.8.0/\(key)") >= 2, "read at start and again at a series start")
    }
  }

  @Test func apiProblemsAreReportedAndFramesStillFlow() throws {
    let server = try FakeSimplon()
    defer { server.stop() }
    server.state.withLock { state in
      state.stream["config/mode"] = "disabled"
      state.stream["config/format"] = "cbor"
      state.stream["status/dropped"] = nil  // older firmware: optional, not an error
    }
    let dcu = try FakeDCU()
    let run = try Run(
      """
      nodes:
        det: {type: eiger-stream, endpoint: "\(dcu.endpoint)", version: "1", api: "\(server.url)"}
        rec: {type: record, input: det}
      """)
    let start = try Self.startWithStatus(dcu, run)
    #expect(run.stop())
    let attributes = try #require(start).meta.attributes
    #expect(attributes["stream_mode"] == "disabled" && attributes["stream_dropped"] == nil)
    // Each completed read reports the disabled stream and the format mismatch.
    let rounds = server.count("GET /stream/api/1.8.0/config/mode")
    #expect(run.errors("det") >= 2 && run.errors("det") <= 2 * rounds)
  }

  @Test func anUnreachableApiIsCountedAndNeverHoldsUpFrames() throws {
    let dcu = try FakeDCU()
    let port = ForwardTests.freePort()
    let run = try Run(
      """
      nodes:
        det: {type: eiger-stream, endpoint: "\(dcu.endpoint)", version: "1", api: "http://127.0.0.1:\(port)"}
        rec: {type: record, input: det}
      """)
    try dcu.send([FakeDCU.v1Header(series: 1, detail: "none"), FakeDCU.v1End(series: 1)])
    #expect(Self.waitForEnd(run, series: 1), "frames flow while the api does not answer")
    #expect(ZMQSourceTests.waitUntil(seconds: 10) { run.errors("det") >= 1 }, "the failed read is counted")
    #expect(run.stop())
    #expect(run.runtime.failures.isEmpty, "\(run.runtime.failures)")
    let start = run.recorder.frames(of: "rec").first
    #expect(start?.kind == .seriesStart && start?.meta.attributes["stream_state"] == nil)
  }
}
