import Foundation
import ZeroMQ

/// A test-only stand-in for a DECTRIS detector control unit: a PUSH socket bound
/// on 127.0.0.1 that sends stream v1 (JSON multipart) and stream v2 (CBOR)
/// messages on demand, written from the protocol sheet
/// (`/work/shared/protocols/eiger-stream.md`).
struct FakeDCU: ~Copyable {
  /// One message: its parts.
  typealias Message = [[UInt8]]

  let context: ZMQContext
  let socket: Socket
  let port: Int
  var endpoint: String { "tcp://127.0.0.1:\(port)" }

  init() throws {
    let port = ForwardTests.freePort()
    let context = try ZMQContext()
    let socket = try Socket(.push, context: context)
    try socket.setOption(.linger, 0)
    try socket.setOption(.sendTimeout, 5000)
    try socket.bind("tcp://127.0.0.1:\(port)")
    self.port = port
    self.context = context
    self.socket = socket
  }

  func send(_ parts: Message) throws {
    var message = MultipartMessage(minimumCapacity: parts.count)
    for part in parts { message.append(part) }
    try socket.send(message)
  }

  func send(_ messages: [Message]) throws { for message in messages { try send(message) } }

  // MARK: - Stream v1

  static func text(_ string: String) -> [UInt8] { Array(string.utf8) }

  /// Deterministic blob bytes of image `frame` of `series`.
  static func blob(series: Int, frame: Int, size: Int) -> [UInt8] {
    (0..<size).map { UInt8(truncatingIfNeeded: series &* 131 &+ frame &* 17 &+ $0 &* 7 &+ $0 >> 9) }
  }

  static let config = """
    {"count_time":0.0099999,"frame_time":0.01,"nimages":3,"ntrigger":1,"x_pixels_in_detector":4,\
    "y_pixels_in_detector":3,"bit_depth_image":16,"compression":"bslz4","wavelength":1.0332,\
    "beam_center_x":2.5,"detector_distance":0.12,"omega_start":0.0}
    """
  static let flatfield = (0..<48).map { UInt8($0) }
  static let pixelmask = (0..<48).map { UInt8(200 - $0) }
  static let countrate = (0..<64).map { UInt8($0 ^ 0x5a) }
  static let headerAppendix = text("{\"user\":\"beamline p11\",\"sample\":\"lysozyme\"}")

  /// The series-start message with `detail` none, basic or all.
  static func v1Header(series: Int, detail: String, appendix: Bool = false) -> Message {
    var parts = [text("{\"htype\":\"dheader-1.0\",\"series\":\(series),\"header_detail\":\"\(detail)\"}")]
    if detail != "none" { parts.append(text(config)) }
    if detail == "all" {
      parts.append(text("{\"htype\":\"dflatfield-1.0\",\"shape\":[4,3],\"type\":\"float32\"}"))
      parts.append(flatfield)
      parts.append(text("{\"htype\":\"dpixelmask-1.0\",\"shape\":[4,3],\"type\":\"uint32\"}"))
      parts.append(pixelmask)
      parts.append(text("{\"htype\":\"dcountrate_table-1.0\",\"shape\":[2,8],\"type\":\"float32\"}"))
      parts.append(countrate)
    }
    if appendix { parts.append(headerAppendix) }
    return parts
  }

  /// An image message; `size` overrides the size in dimage_d (to break it).
  static func v1Image(
    series: Int, frame: Int, blob: [UInt8], encoding: String = "bs16-lz4<", hash: String = "",
    appendix: [UInt8]? = nil, size: Int? = nil
  ) -> Message {
    var parts = [
      text("{\"htype\":\"dimage-1.0\",\"series\":\(series),\"frame\":\(frame),\"hash\":\"\(hash)\"}"),
      text(
        "{\"htype\":\"dimage_d-1.0\",\"shape\":[4,3],\"type\":\"uint16\",\"encoding\":\"\(encoding)\","
          + "\"size\":\(size ?? blob.count)}"),
      blob,
      text(
        "{\"htype\":\"dconfig-1.0\",\"start_time\":\(1000 + frame * 10),\"stop_time\":\(1009 + frame * 10),"
          + "\"real_time\":9}"),
    ]
    if let appendix { parts.append(appendix) }
    return parts
  }

  static func v1End(series: Int) -> Message {
    [text("{\"htype\":\"dseries_end-1.0\",\"series\":\(series)}")]
  }

  // MARK: - Stream v2

  /// Stream v2 messages, written with `CBORWriter`.
  static func v2Start(series: Int, images: Int) -> [UInt8] {
    var w = CBORWriter()
    w.selfDescribe()
    w.map(9)
    w.text("type")
    w.text("start")
    w.text("series_id")
    w.uint(UInt64(series))
    w.text("series_unique_id")
    w.text("01HZ-series-\(series)")
    w.text("number_of_images")
    w.uint(UInt64(images))
    w.text("image_size_x")
    w.uint(4)
    w.text("image_size_y")
    w.uint(3)
    w.text("image_dtype")
    w.text("uint16")
    w.text("count_time")
    w.double(0.0099999)
    w.text("goniometer")
    w.indefiniteMap()
    w.text("omega")
    w.map(2)
    w.text("increment")
    w.double(0.1)
    w.text("start")
    w.double(0)
    w.breakCode()
    return w.bytes
  }

  /// An image whose channel is a plain tag-69 typed array, or (`compressed`) a
  /// tag-69 array over a DECTRIS tag-56500 bslz4 byte string.
  static func v2Image(series: Int, image: Int, data: [UInt8], compressed: Bool) -> [UInt8] {
    var w = CBORWriter()
    w.selfDescribe()
    w.map(7)
    w.text("type")
    w.text("image")
    w.text("series_id")
    w.uint(UInt64(series))
    w.text("series_unique_id")
    w.text("01HZ-series-\(series)")
    w.text("image_id")
    w.uint(UInt64(image))
    w.text("start_time")
    w.array(2)
    w.uint(UInt64(1000 + image))
    w.uint(1000)
    w.text("real_time")
    w.array(2)
    w.uint(1)
    w.uint(100)
    w.text("data")
    w.map(1)
    w.text("threshold_1")
    w.tag(40)
    w.array(2)
    w.array(2)
    w.uint(3)  // height
    w.uint(4)  // width
    w.tag(69)
    if compressed {
      w.tag(56500)
      w.array(3)
      w.text("bslz4")
      w.uint(2)
    }
    w.byteString(data)
    return w.bytes
  }

  static func v2End(series: Int) -> [UInt8] {
    var w = CBORWriter()
    w.selfDescribe()
    w.map(3)
    w.text("type")
    w.text("end")
    w.text("series_id")
    w.uint(UInt64(series))
    w.text("series_unique_id")
    w.text("01HZ-series-\(series)")
    return w.bytes
  }
}

/// A tiny CBOR (RFC 8949) writer for the fake DCU and the malformed corpus.
struct CBORWriter {
  var bytes: [UInt8] = []

  mutating func head(_ major: UInt8, _ value: UInt64) {
    let m = major << 5
    switch value {
    case 0..<24: bytes.append(m | UInt8(value))
    case 24...0xff: bytes += [m | 24, UInt8(value)]
    case 0x100...0xffff:
      bytes += [m | 25] + (0..<2).reversed().map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) }
    case 0x1_0000...0xffff_ffff:
      bytes += [m | 26] + (0..<4).reversed().map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) }
    default: bytes += [m | 27] + (0..<8).reversed().map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) }
    }
  }
  mutating func uint(_ value: UInt64) { head(0, value) }
  mutating func byteString(_ value: [UInt8]) {
    head(2, UInt64(value.count))
    bytes += value
  }
  mutating func text(_ value: String) {
    head(3, UInt64(value.utf8.count))
    bytes += value.utf8
  }
  mutating func array(_ count: Int) { head(4, UInt64(count)) }
  mutating func map(_ count: Int) { head(5, UInt64(count)) }
  mutating func indefiniteMap() { bytes.append(0xbf) }
  mutating func breakCode() { bytes.append(0xff) }
  mutating func tag(_ value: UInt64) { head(6, value) }
  mutating func selfDescribe() { tag(55799) }
  mutating func double(_ value: Double) {
    bytes.append(0xfb)
    bytes += (0..<8).reversed().map { UInt8(truncatingIfNeeded: value.bitPattern >> ($0 * 8)) }
  }
}
