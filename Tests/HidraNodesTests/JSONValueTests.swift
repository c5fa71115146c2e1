import Foundation
import Testing

@testable import HidraRuntime

/// The fast JSON reader never changes a result: whatever it answers, Foundation
/// answers the same, and what it leaves alone goes to Foundation.
@Suite struct JSONValueTests {
  static func fast(_ text: [UInt8]) -> [String: JSONValue]? {
    text.withUnsafeBytes { JSONValue.object(parsing: $0) }
  }

  static func foundation(_ text: [UInt8]) -> [String: JSONValue]? {
    text.withUnsafeBytes { JSONValue.object(parsing: $0, foundationOnly: true) }
  }

  /// Whether the fast reader answered by itself (without Foundation).
  static func readsPlainly(_ text: [UInt8]) -> Bool {
    text.withUnsafeBytes { bytes in
      var reader = PlainJSONReader(bytes)
      return reader.topLevelObject() != nil
    }
  }

  /// Texts the fast reader answers itself: the same as Foundation's answer.
  @Test(arguments: [
    #"{}"#,
    #"  {"a":1}  "#,
    "{\n\t\"a\" : [ 1 , 2 ] ,\r\n \"b\":{ }}",
    #"{"hidra":1,"kind":"data","id":12,"series":1,"frame":11,"name":"series_1/frame_000011.raw","created_ns":1764048000123456789,"size":4096,"content_type":"application/octet-stream","encoding":"raw","seq":12}"#,
    #"{"shape":[2048,1024],"dtype":"uint16","checksums":{"xxh3":"9a0b3c5d1e2f4a6b"},"attributes":{"beamline":"p11"}}"#,
    #"{"chunk":{"index":0,"count":3,"offset":0}}"#,
    #"{"name":"Bücher/日本/😀.h5"}"#,
    #"{"big":9223372036854775807,"zero":0,"empty":"","list":[],"nested":[[[{"x":[0]}]]]}"#,
    #"{"unknown":{"deep":["a","b"]},"size":1}"#,
  ])
  func plainTextsReadTheSameBothWays(text: String) {
    let bytes = Array(text.utf8)
    #expect(Self.readsPlainly(bytes))
    #expect(Self.fast(bytes) != nil)
    #expect(Self.fast(bytes) == Self.foundation(bytes))
  }

  /// Texts it leaves to Foundation (valid or not): the same answer as Foundation's.
  @Test(arguments: [
    #"{"name":"a\"b"}"#,
    #"{"name":"a\u00e9\ud83d\ude00"}"#,
    #"{"name":"a\u0000b"}"#,
    #"{"size":10.5}"#,
    #"{"size":1e3}"#,
    #"{"size":-1}"#,
    #"{"size":-0}"#,
    #"{"size":007}"#,
    #"{"size":99999999999999999999999}"#,
    #"{"size":18446744073709551615}"#,
    #"{"flag":true,"other":false,"none":null}"#,
    #"{"a":1,"a":2}"#,
    #"{"o":{"k":"x","k":"y"}}"#,
    #"{"a":1,}"#,
    #"{"a" 1}"#,
    #"{"a":1} x"#,
    #"{"a":1}{"b":2}"#,
    #"[1,2,3]"#,
    #""hidra""#,
    #"5"#,
    "",
    "{",
    #"{"a":"#,
    #"{"a":"unterminated}"#,
    #"{"a":[1,2}"#,
    "{\"tab\":\"a\tb\"}",
    "\u{FEFF}{\"a\":1}",
    String(repeating: "[", count: 40) + String(repeating: "]", count: 40),
    "{\"a\":" + String(repeating: "[", count: 20) + String(repeating: "]", count: 20) + "}",
  ])
  func otherTextsGoToFoundation(text: String) {
    let bytes = Array(text.utf8)
    #expect(!Self.readsPlainly(bytes))
    #expect(Self.fast(bytes) == Self.foundation(bytes))
  }

  @Test func invalidUTF8GoesToFoundation() {
    for bytes: [UInt8] in [
      Array(#"{"name":""#.utf8) + [0xFF, 0xFE] + Array(#""}"#.utf8),
      Array(#"{"name":""#.utf8) + [0xC3] + Array(#""}"#.utf8),
      Array(#"{"na"#.utf8) + [0xED, 0xA0, 0x80] + Array(#"me":1}"#.utf8),
    ] {
      #expect(!Self.readsPlainly(bytes))
      #expect(Self.fast(bytes) == Self.foundation(bytes))
    }
  }

  @Test func scalarsReadAsText() {
    let object = Self.foundation(Array(#"{"i":5,"d":0.25,"b":true,"s":"x","u":18446744073709551615}"#.utf8))
    #expect(object?["i"]?.text == "5")
    #expect(object?["d"]?.text == "0.25")
    #expect(object?["b"]?.text == "true")
    #expect(object?["s"]?.text == "x")
    #expect(object?["u"]?.text == "18446744073709551615")
    #expect(object?["b"]?.int == nil, "a boolean is not an integer")
    #expect(object?["d"]?.int == nil, "a float is not an integer")
  }

  // MARK: - Wire headers and control messages, both ways

  struct Outcome: Equatable {
    var header: Wire.Header?
    var control: Wire.Control?
    var error: String?
  }

  static func header(_ bytes: [UInt8], foundationOnly: Bool) -> Outcome {
    do {
      let header = try bytes.withUnsafeBytes { try Wire.decodeHeader($0, foundationOnly: foundationOnly) }
      return Outcome(header: header)
    } catch let error as Wire.DecodeError {
      return Outcome(error: "\(error.kind): \(error.description)")
    } catch {
      return Outcome(error: "\(error)")
    }
  }

  static func control(_ bytes: [UInt8], foundationOnly: Bool) -> Outcome {
    do {
      let control = try bytes.withUnsafeBytes { try Wire.Control.decode($0, foundationOnly: foundationOnly) }
      return Outcome(control: control)
    } catch let error as Wire.DecodeError {
      return Outcome(error: "\(error.kind): \(error.description)")
    } catch {
      return Outcome(error: "\(error)")
    }
  }

  /// Headers as forwards encode them, of every shape.
  static func headers() -> [[UInt8]] {
    var frames: [Frame] = []
    var meta = FrameMeta(
      id: 7, series: 2, frame: 6, name: "series_2/frame_000006.raw", createdNanos: 1_764_048_000)
    frames.append(Frame(kind: .data, meta: meta, parts: [Payload(copying: [1, 2, 3])]))
    meta.shape = [1024, 512]
    meta.dtype = "uint32"
    meta.encoding = "bs32-lz4"
    meta.checksums.set("xxh3", 0x9a0b_3c5d_1e2f_4a6b)
    meta.attributes = ["beamline": "p11", "start_time": "12"]
    frames.append(Frame(kind: .data, meta: meta))
    meta.name = "odd \"name\"\\with\tescapes/é"
    frames.append(Frame(kind: .data, meta: meta))
    frames.append(Frame.seriesStart(3, id: 1, attributes: ["header_detail": "basic"]))
    frames.append(Frame.seriesEnd(3, id: 9, frames: 7))
    var texts = frames.map { Wire.encodeHeader($0) }
    texts.append(Wire.encodeHeader(frames[0], chunk: Wire.Chunk(index: 1, count: 3, offset: 100), seq: 41))
    return texts
  }

  static let controls: [[UInt8]] = [
    Wire.Control.ready(credit: 16, session: "a1b2").encoded(),
    Wire.Control.ready(credit: 4096, session: nil).encoded(),
    Wire.Control.ack(seqs: [1, 2, 3], failed: [4]).encoded(),
    Wire.Control.ack(seqs: [], failed: []).encoded(),
    Wire.Control.heartbeat.encoded(), Wire.Control.next.encoded(), Wire.Control.bye.encoded(),
  ]

  @Test func encodedHeadersAndControlsReadPlainlyAndAlike() {
    for text in Self.headers() {
      let escaped = String(decoding: text, as: UTF8.self).contains("\\")
      #expect(Self.readsPlainly(text) == !escaped)
      let outcome = Self.header(text, foundationOnly: false)
      #expect(outcome.header != nil)
      #expect(outcome == Self.header(text, foundationOnly: true))
    }
    for text in Self.controls {
      #expect(Self.readsPlainly(text))
      let outcome = Self.control(text, foundationOnly: false)
      #expect(outcome.control != nil)
      #expect(outcome == Self.control(text, foundationOnly: true))
    }
  }

  /// Thousands of mutations of valid headers and control messages (bytes
  /// replaced by JSON's own characters or by any byte, bytes removed or
  /// repeated, texts cut short): each decodes to the same header or control, or
  /// fails with the same error, both ways.
  @Test func mutatedMessagesDecodeAlikeBothWays() {
    var random = ZMQSourceTests.SplitMix(state: 7)
    let alphabet = Array(#"{}[]":,.-+0123456789eEtfnul\ "#.utf8) + [0x00, 0x0A, 0xC3, 0xFF]
    func mutate(_ text: [UInt8]) -> [UInt8] {
      var bytes = text
      for _ in 0...random.next(below: 3) where !bytes.isEmpty {
        let at = random.next(below: bytes.count)
        switch random.next(below: 5) {
        case 0: bytes[at] = alphabet[random.next(below: alphabet.count)]
        case 1: bytes[at] = UInt8(truncatingIfNeeded: random.next())
        case 2: bytes.remove(at: at)
        case 3: bytes.insert(bytes[at], at: at)
        default: bytes = Array(bytes.prefix(at))
        }
      }
      return bytes
    }
    var (decoded, plain) = (0, 0)
    for text in Self.headers() {
      for _ in 0..<600 {
        let bytes = mutate(text)
        let outcome = Self.header(bytes, foundationOnly: false)
        #expect(
          outcome == Self.header(bytes, foundationOnly: true), "\(String(decoding: bytes, as: UTF8.self))")
        if outcome.header != nil { decoded += 1 }
        if Self.readsPlainly(bytes) { plain += 1 }
      }
    }
    for text in Self.controls {
      for _ in 0..<300 {
        let bytes = mutate(text)
        let outcome = Self.control(bytes, foundationOnly: false)
        #expect(
          outcome == Self.control(bytes, foundationOnly: true), "\(String(decoding: bytes, as: UTF8.self))")
      }
    }
    // The mutations reach both readers and both outcomes.
    #expect(decoded > 100 && plain > 100 && plain < 3_600)
  }
}
