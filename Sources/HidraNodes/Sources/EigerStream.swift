import Foundation
import HidraClient
import HidraGraph
import HidraRuntime
import ZeroMQ

/// `eiger-stream`: the DECTRIS SIMPLON stream interface (v1 JSON, v2 CBOR).
public enum EigerStreamSource {
  public static let spec = NodeTypeSpec(
    name: "eiger-stream", kind: .source,
    summary: "the ZeroMQ stream of a DECTRIS EIGER detector (stream v1 and v2)",
    details: """
      Connects a PULL socket to the detector control unit. The detector's PUSH socket round-robins \
      between connected clients, so Hidra must be its only client and fans out itself. The series \
      header becomes a control frame delivered to every branch; each image becomes a data frame whose \
      payload is passed on untouched (still compressed).

      Stream v1: the series-start frame carries every header part after the first (configuration, \
      flatfield, pixel mask, count-rate table, appendix) and the attributes `dheader` (the first part \
      as sent), `header_detail`, `x_pixels_in_detector`, `y_pixels_in_detector`, `bit_depth_image`, \
      `nimages`, `ntrigger`, `count_time` and `frame_time`; a data frame carries the image blob \
      alone, with the encoding `raw`, `lz4` or `bs<bits>-lz4`, the `hash` as checksum `md5`, and the \
      attributes `start_time`, `stop_time`, `real_time` and `appendix` (a UTF-8 image appendix below \
      4 KiB). Stream v2: every \
      frame carries its whole CBOR message (`application/cbor`, encoding `cbor`); data frames get the \
      shape, element type and the attribute `data_encoding` (`raw`, `lz4`, `bs<bits>-lz4`) of the \
      first channel. A series-end frame carries the detector's end message untouched (JSON or CBOR). \
      Data frames are named `series_<series>/frame_<frame, 6 digits>.<raw|lz4|bslz4|cbor>`.

      With `api:` the source reads the stream interface's SIMPLON parameters (`status/state`, \
      `status/dropped`, `config/mode`, `config/format`, `config/header_detail` below \
      `/stream/api/<api_version>/`) when it starts and again at each series start, in the background: \
      a series-start frame carries the values of the last completed read as the attributes \
      `stream_state`, `stream_dropped`, `stream_mode`, `stream_format` and `stream_header_detail` \
      (none until the first read has answered; frames never wait for it). Each read counts a failure \
      to read the state or mode (`api`), a disabled stream (`stream-disabled`: no images will come), \
      a stream in state `error` (`stream-error`) and a format other than the version read \
      (`stream-format`).

      Counted and delivered: frame gaps (`frame-gap`); a series or image arriving while another series \
      is open (`missing-series-end`, the open series is closed with a series-end marked \
      `synthetic: true`); images without a series start (`missing-series-start`, a synthetic start is \
      sent first). Counted and dropped: malformed messages (`bad-json`, `bad-cbor`, `unknown-htype`, \
      `missing-part`, `bad-size`, `bad-field`, ...) and series ends that close no open series. A series \
      still open when the source stops is closed with a synthetic series-end.
      """,
    options: [
      OptionSpec(
        "endpoint", .endpoint(schemes: ["tcp", "ipc"], role: .connect), required: true,
        doc: "The detector's stream address, e.g. `tcp://dcu:9999` (v1) or `tcp://dcu:31001` (v2)."),
      OptionSpec(
        "version", .choice(["auto", "1", "2"]), default: "auto",
        doc: "Stream format: v1 (JSON multipart), v2 (CBOR), or detected from the first message."),
      OptionSpec(
        "api", .endpoint(schemes: ["http"], role: .connect),
        doc: "The detector's SIMPLON REST address, to read the stream's status and config."),
      OptionSpec("api_version", .string, default: "1.8.0", doc: "SIMPLON API version used with `api`."),
      OptionSpec(
        "receive_buffer", .integer(min: 1), default: "1000",
        doc: "ZeroMQ receive high-water mark in messages."),
    ],
    example: """
      detector:
        type: eiger-stream
        endpoint: tcp://dcu.example:9999
      """)
}

extension EigerStreamSource {
  /// Where an open series stands.
  struct OpenSeries {
    var series: Int
    var frames = 0
    var lastFrame: Int?
  }

  /// What one detector message means, before the series bookkeeping.
  enum Event {
    case start(series: Int, parts: [Payload], attributes: [String: String], contentType: String)
    case image(series: Int, frame: Int, meta: FrameMeta, parts: [Payload])
    /// `parts`: the detector's end message, untouched.
    case end(series: Int, parts: [Payload], contentType: String)
  }

  /// A message rejected: counted under `kind` and dropped.
  struct Rejection: Error {
    var kind: String
    var message: String
    init(_ kind: String, _ message: String) {
      self.kind = kind
      self.message = message
    }
  }

  /// The running source (see `docs/graph-reference.md`, `eiger-stream`).
  ///
  /// Stream v1: one multipart message is one logical message, dispatched on the
  /// `htype` of its first part. The series header becomes a series-start frame
  /// whose payload is every part after the first, untouched; an image becomes a
  /// data frame whose payload is the data blob alone, adopted without copying.
  ///
  /// Stream v2: every message part is one CBOR message, passed on whole as the
  /// payload (`application/cbor`, encoding `cbor`); only the type, ids, shape and
  /// element type are read from it, with bounds-checked `CBORReader`.
  ///
  /// Data frames are named `series_<series>/frame_<frame, 6 digits>.<ext>`, the
  /// extension saying what the payload is: `raw`, `lz4`, `bslz4` (v1) or `cbor` (v2).
  struct Body: StageBody {
    let endpoint: String
    /// nil until detected from the first message (`version: auto`).
    var version: Int?
    let receiveBuffer: Int32
    /// The SIMPLON REST address (`api:`) and version, if given.
    let api: String?
    let apiVersion: String
    var status: EigerStreamAPI?
    var nextID: UInt64 = 0
    var open: OpenSeries?

    /// Largest JSON part parsed (stream v1 headers and configs are a few KiB).
    static let maxJSON = 4 << 20
    /// Largest appendix kept as the `appendix` attribute.
    static let maxAppendix = 4096

    init(node: Node) {
      endpoint = node["endpoint"]?.string ?? ""
      switch node["version"]?.string {
      case "1": version = 1
      case "2": version = 2
      default: version = nil
      }
      receiveBuffer = Int32(clamping: node["receive_buffer"]?.integer ?? 1000)
      api = node["api"]?.string
      apiVersion = node["api_version"]?.string ?? "1.8.0"
    }

    mutating func run(_ context: StageContext) throws {
      if let api {
        let status = EigerStreamAPI(api: api, apiVersion: apiVersion, version: version)
        status.refresh()
        self.status = status
      }
      defer { status?.shutdown() }
      let socket = try Socket(.pull, context: SharedZMQ.context)
      try socket.setOption(.linger, 0)
      try socket.setOption(.receiveHighWaterMark, receiveBuffer)
      try socket.connect(endpoint)
      while !context.isStopping {
        status?.collect(context, detectedVersion: version)
        guard var message = try socket.tryReceiveMultipart() else {
          _ = try socket.poll(.readable, timeout: .milliseconds(100))
          continue
        }
        guard accept(&message, context) else { return }
      }
      // Drain what ZeroMQ already holds, for at most a second.
      let deadline = ContinuousClock.now.advanced(by: .seconds(1))
      while !context.isAborted, ContinuousClock.now < deadline, var message = try socket.tryReceiveMultipart()
      {
        guard accept(&message, context) else { return }
      }
      // The detector may still be in a series: close it for the consumers.
      if let series = open { _ = endSeries(series, synthetic: true, context) }
    }

    /// Handles one received multipart message; false when the consumers are gone.
    mutating func accept(_ message: inout MultipartMessage, _ context: StageContext) -> Bool {
      guard message.count > 0 else { return true }
      if version == nil {
        let first = message.withPart(at: 0) { part in part.withUnsafeBytes { Self.detect($0) } }
        guard let detected = first else {
          context.reportError("unknown-format", "first message is neither stream v1 JSON nor stream v2 CBOR")
          return true
        }
        version = detected
      }
      var events: [Event] = []
      if version == 1 {
        do {
          events.append(try Self.decodeV1(&message))
        } catch let rejection as Rejection {
          context.reportError(rejection.kind, "message dropped: \(rejection.message)")
        } catch {
          context.reportError("bad-message", "message dropped: \(error)")
        }
      } else {
        // Each part is a CBOR message (a DCU may send several in one multipart message).
        while message.count > 0 {
          let part = WireAssembler.adopt(message.removeFirst())
          do {
            events.append(try Self.decodeV2(part))
          } catch let rejection as Rejection {
            context.reportError(rejection.kind, "message dropped: \(rejection.message)")
          } catch {
            context.reportError("bad-cbor", "message dropped: \(error)")
          }
        }
      }
      for event in events {
        guard handle(event, context) else { return false }
      }
      return true
    }

    /// 2 for a CBOR self-described message, 1 for a JSON object, nil otherwise.
    static func detect(_ bytes: UnsafeRawBufferPointer) -> Int? {
      if bytes.count >= 3, bytes[0] == 0xd9, bytes[1] == 0xd9, bytes[2] == 0xf7 { return 2 }
      let first = bytes.first { ![0x20, 0x09, 0x0a, 0x0d].contains($0) }
      return first == UInt8(ascii: "{") ? 1 : nil
    }

    // MARK: - Series bookkeeping

    mutating func makeID() -> UInt64 {
      nextID += 1
      return nextID
    }

    /// Emits the end of `series` (synthetic when the detector never sent it).
    mutating func endSeries(
      _ series: OpenSeries, synthetic: Bool, _ context: StageContext,
      message: (parts: [Payload], contentType: String)? = nil
    ) -> Bool {
      open = nil
      var frame = Frame.seriesEnd(series.series, id: makeID(), frames: series.frames)
      frame.meta.createdNanos = wallNanos()
      if let message {
        frame.parts = PayloadParts(message.parts)
        frame.meta.contentType = message.contentType
      }
      if synthetic { frame.meta.attributes["synthetic"] = "true" }
      return context.emit(frame)
    }

    /// Closes a series still open when another one (or an image of another one)
    /// arrives: its end was lost.
    mutating func closeMissing(_ reason: String, _ context: StageContext) -> Bool {
      guard let series = open else { return true }
      context.reportError("missing-series-end", "series \(series.series) has no end: \(reason)")
      return endSeries(series, synthetic: true, context)
    }

    mutating func handle(_ event: Event, _ context: StageContext) -> Bool {
      switch event {
      case .start(let series, let parts, var attributes, let contentType):
        guard closeMissing("series \(series) started", context) else { return false }
        if let status {
          // The last status read (never waited for), then a fresh read for the next series.
          status.collect(context, detectedVersion: version)
          attributes.merge(status.attributes) { mine, _ in mine }
          status.refresh()
        }
        let meta = FrameMeta(
          id: makeID(), series: series, createdNanos: wallNanos(), contentType: contentType,
          attributes: attributes)
        open = OpenSeries(series: series)
        return context.emit(Frame(kind: .seriesStart, meta: meta, parts: parts))
      case .image(let series, let number, var meta, let parts):
        if let current = open, current.series != series {
          guard closeMissing("an image of series \(series) arrived", context) else { return false }
        }
        if open == nil {
          // Connected mid-series, or the header was lost: open it for the consumers.
          context.reportError(
            "missing-series-start", "image \(number) of series \(series) without its header")
          let start = FrameMeta(
            id: makeID(), series: series, createdNanos: wallNanos(), contentType: "application/json",
            attributes: ["synthetic": "true"])
          guard context.emit(Frame(kind: .seriesStart, meta: start)) else { return false }
          open = OpenSeries(series: series)
        }
        if let last = open?.lastFrame, number != last &+ 1 {
          context.reportError(
            "frame-gap", "series \(series): frame \(number) follows frame \(last)")
        }
        open?.lastFrame = number
        open?.frames += 1
        meta.id = makeID()
        return context.emit(Frame(kind: .data, meta: meta, parts: parts))
      case .end(let series, let parts, let contentType):
        guard let current = open, current.series == series else {
          let state = open.map { "series \($0.series) is open" } ?? "no series is open"
          context.reportError("unexpected-series-end", "end of series \(series) dropped: \(state)")
          return true
        }
        return endSeries(current, synthetic: false, context, message: (parts, contentType))
      }
    }

    static func name(_ series: Int, _ frame: Int, _ ext: String) -> String {
      let digits = String(frame)
      let padded =
        digits.count < 6 && frame >= 0 ? String(repeating: "0", count: 6 - digits.count) + digits : digits
      return "series_\(series)/frame_\(padded).\(ext)"
    }

    // MARK: - Stream v1

    /// A JSON object from a message part (the fast reader first: see `JSONValue`).
    static func json(_ message: borrowing MultipartMessage, _ index: Int, _ what: String) throws -> [String:
      JSONValue]
    {
      let object = message.withPart(at: index) { part in
        part.withUnsafeBytes { bytes -> [String: JSONValue]? in
          guard bytes.count <= maxJSON else { return nil }
          return JSONValue.object(parsing: bytes)
        }
      }
      guard let object else {
        throw Rejection("bad-json", "\(what) (part \(index + 1)) is not a JSON object")
      }
      return object
    }

    /// The `htype` of a JSON object, without its version (`dimage-1.0` -> `dimage`).
    static func htype(_ object: [String: JSONValue]) -> String? {
      guard let htype = object["htype"]?.string else { return nil }
      return String(htype.split(separator: "-", maxSplits: 1).first ?? "")
    }

    /// A scalar from `JSONSerialization` as attribute text (numbers and booleans as JSON writes them).
    static func text(_ value: Any?) -> String? {
      value.flatMap { JSONValue(foundation: $0)?.text }
    }

    /// The attribute text of a small UTF-8 part; nil if empty, large or binary.
    static func appendix(_ message: borrowing MultipartMessage, _ index: Int) -> String? {
      message.withPart(at: index) { part in
        part.withUnsafeBytes { bytes -> String? in
          guard !bytes.isEmpty, bytes.count < maxAppendix else { return nil }
          return String(validating: bytes, as: UTF8.self)
        }
      }
    }

    static let configAttributes = [
      "x_pixels_in_detector", "y_pixels_in_detector", "bit_depth_image", "nimages", "ntrigger", "count_time",
      "frame_time",
    ]

    static func decodeV1(_ message: inout MultipartMessage) throws -> Event {
      let header = try json(message, 0, "the first part")
      guard let htype = htype(header) else { throw Rejection("bad-json", "first part has no 'htype'") }
      func series() throws -> Int {
        guard let series = header["series"]?.int else {
          throw Rejection("bad-field", "\(htype) without an integer 'series'")
        }
        return series
      }
      switch htype {
      case "dheader":
        let series = try series()
        let detail = header["header_detail"]?.string ?? "none"
        var attributes = ["header_detail": detail]
        // The first part as sent, so a stream-v1 forward can re-emit the header byte for byte.
        if let first = appendix(message, 0) { attributes["dheader"] = first }
        if detail != "none" {
          guard message.count >= 2 else {
            throw Rejection("missing-part", "header_detail \(detail) without config")
          }
          let config = try json(message, 1, "the detector configuration")
          for key in configAttributes { if let value = config[key]?.text { attributes[key] = value } }
        }
        var parts: [Payload] = []
        while message.count > 1 { parts.append(WireAssembler.adopt(message.remove(at: message.count - 1))) }
        return .start(
          series: series, parts: parts.reversed(), attributes: attributes, contentType: "application/json")
      case "dseries_end":
        let series = try series()
        return .end(
          series: series, parts: [WireAssembler.adopt(message.remove(at: 0))], contentType: "application/json"
        )
      case "dimage":
        let series = try series()
        guard let frame = header["frame"]?.int else {
          throw Rejection("bad-field", "dimage without an integer 'frame'")
        }
        guard message.count >= 3 else {
          throw Rejection(
            "missing-part", "image \(frame) of series \(series) has \(message.count) of 4 parts")
        }
        let description = try json(message, 1, "the image description")
        guard Self.htype(description) == "dimage_d" else {
          throw Rejection("missing-part", "image \(frame): part 2 is not dimage_d")
        }
        let blobSize = message.withPart(at: 2) { $0.count }
        if let size = description["size"] {
          guard let size = size.int, size == blobSize else {
            throw Rejection("bad-size", "image \(frame): blob of \(blobSize) bytes, dimage_d says \(size)")
          }
        }
        let raw = description["encoding"]?.string ?? "<"
        guard let (encoding, ext) = v1Encoding(raw) else {
          throw Rejection("bad-field", "image \(frame): unknown encoding '\(raw)'")
        }
        var meta = FrameMeta(
          series: series, frame: frame, name: name(series, frame, ext), createdNanos: wallNanos(),
          encoding: encoding, dtype: description["type"]?.string)
        if let shape = description["shape"]?.array {
          let sizes = shape.compactMap(\.int)
          if sizes.count == shape.count, sizes.allSatisfy({ $0 >= 0 }) { meta.shape = sizes }
        }
        if let hash = header["hash"]?.string, !hash.isEmpty {
          if hash.utf8.count == 32, hash.utf8.allSatisfy({ isHexDigit($0) }) {
            meta.checksums["md5"] = hash.lowercased()
          } else {
            meta.attributes["hash"] = hash
          }
        }
        if message.count >= 4 {
          let config = try json(message, 3, "the image times")
          guard Self.htype(config) == "dconfig" else {
            throw Rejection("missing-part", "image \(frame): part 4 is not dconfig")
          }
          for key in ["start_time", "stop_time", "real_time"] {
            if let value = config[key]?.text { meta.attributes[key] = value }
          }
        }
        if message.count >= 5, let appendix = appendix(message, 4) { meta.attributes["appendix"] = appendix }
        let blob = WireAssembler.adopt(message.remove(at: 2))
        return .image(series: series, frame: frame, meta: meta, parts: [blob])
      default:
        throw Rejection("unknown-htype", "unknown htype '\(header["htype"]?.string ?? "")'")
      }
    }

    static func isHexDigit(_ byte: UInt8) -> Bool {
      (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
        || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
        || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(byte)
    }

    /// Maps a v1 `encoding` (`[bs<BITS>][[-]lz4][<|>]`) to Hidra's encoding name and a file extension.
    static func v1Encoding(_ text: String) -> (String, String)? {
      var rest = Substring(text)
      if rest.hasSuffix("<") || rest.hasSuffix(">") { rest = rest.dropLast() }
      if rest.isEmpty { return ("raw", "raw") }
      if rest == "lz4" { return ("lz4", "lz4") }
      guard rest.hasPrefix("bs") else { return nil }
      rest = rest.dropFirst(2)
      let digits = rest.prefix { $0.isASCII && $0.isNumber }
      rest = rest.dropFirst(digits.count)
      if rest.hasPrefix("-") { rest = rest.dropFirst() }
      guard rest == "lz4", let bits = Int(digits), [8, 16, 32, 64].contains(bits) else { return nil }
      return ("bs\(bits)-lz4", "bslz4")
    }

    // MARK: - Stream v2

    /// Typed-array tags of RFC 8746 and their element types.
    static let typedArrays: [UInt64: String] = [
      64: "uint8", 65: "uint16", 66: "uint32", 67: "uint64", 68: "uint8", 69: "uint16", 70: "uint32",
      71: "uint64", 72: "int8", 73: "int16", 74: "int32", 75: "int64", 77: "int16", 78: "int32", 79: "int64",
      80: "float16", 81: "float32", 82: "float64", 83: "float128", 84: "float16", 85: "float32",
      86: "float64",
      87: "float128",
    ]
    static let startAttributes: Set<String> = [
      "series_unique_id", "arm_date", "number_of_images", "image_size_x", "image_size_y", "image_dtype",
      "count_time", "frame_time",
    ]

    static func decodeV2(_ part: Payload) throws -> Event {
      var type: String?
      var series: UInt64?
      var image: UInt64?
      var size: (x: UInt64?, y: UInt64?) = (nil, nil)
      var dtype: String?
      var attributes: [String: String] = [:]
      var channel: (name: String, dims: [UInt64], dtype: String?, encoding: String)?
      do {
        var reader = CBORReader(part.bytes)
        let tags = try reader.tags()
        guard tags.first == 55799 else { throw Rejection("bad-cbor", "no CBOR self-describe tag") }
        try reader.map { (reader, key) throws(CBORReader.Failure) in
          switch key {
          case "type": type = try reader.text()
          case "series_id": series = try reader.unsigned()
          case "image_id": image = try reader.unsigned()
          case "image_size_x": size.x = try reader.unsigned()
          case "image_size_y": size.y = try reader.unsigned()
          case "image_dtype": dtype = try reader.text()
          case "start_time", "stop_time", "real_time":
            var pair: [UInt64] = []
            try reader.array { (reader, _) throws(CBORReader.Failure) in
              if case .unsigned(let value)? = try reader.scalar() { pair.append(value) }
            }
            if pair.count == 2 { attributes[key] = rationalNanos(pair[0], pair[1]) }
          case "data":
            try reader.map { (reader, name) throws(CBORReader.Failure) in
              if channel == nil { channel = try readChannel(&reader, name) } else { try reader.skip() }
            }
          default:
            if startAttributes.contains(key), let value = try reader.scalar() {
              attributes[key] = value.text
            } else {
              try reader.skip()
            }
          }
        }
      } catch let failure as CBORReader.Failure {
        throw Rejection("bad-cbor", failure.description)
      }
      func id(_ value: UInt64?, _ field: String) throws -> Int {
        guard let value, let id = Int(exactly: value) else {
          throw Rejection("bad-field", "\(type ?? "message") without a usable '\(field)'")
        }
        return id
      }
      switch type {
      case "start":
        if let dtype { attributes["image_dtype"] = dtype }
        if let x = size.x { attributes["image_size_x"] = String(x) }
        if let y = size.y { attributes["image_size_y"] = String(y) }
        return .start(
          series: try id(series, "series_id"), parts: [part], attributes: attributes,
          contentType: "application/cbor")
      case "image":
        let series = try id(series, "series_id")
        let frame = try id(image, "image_id")
        var meta = FrameMeta(
          series: series, frame: frame, name: name(series, frame, "cbor"), createdNanos: wallNanos(),
          contentType: "application/cbor", encoding: "cbor", attributes: attributes)
        if let channel {
          meta.attributes["channel"] = channel.name
          meta.attributes["data_encoding"] = channel.encoding
          meta.dtype = channel.dtype ?? dtype
          // Tag 40 dims are row-major: [height, width] for an image; shape is [width, height].
          let dims = channel.dims.compactMap { Int(exactly: $0) }
          if dims.count == channel.dims.count, !dims.isEmpty { meta.shape = dims.reversed() }
        } else {
          meta.dtype = dtype
          if let x = size.x.flatMap({ Int(exactly: $0) }), let y = size.y.flatMap({ Int(exactly: $0) }) {
            meta.shape = [x, y]
          }
        }
        return .image(series: series, frame: frame, meta: meta, parts: [part])
      case "end":
        return .end(series: try id(series, "series_id"), parts: [part], contentType: "application/cbor")
      default:
        throw Rejection("unknown-type", "message type '\(type ?? "(none)")'")
      }
    }

    /// One channel of an image's `data` map: tag 40 `[[dims], typed array]`,
    /// the typed array possibly a DECTRIS-compressed (tag 56500) byte string.
    static func readChannel(_ reader: inout CBORReader, _ name: String) throws(CBORReader.Failure)
      -> (name: String, dims: [UInt64], dtype: String?, encoding: String)?
    {
      let start = reader.offset
      guard try reader.tags().contains(40) else {
        reader.offset = start
        try reader.skip()
        return (name, [], nil, "raw")
      }
      var dims: [UInt64] = []
      var dtype: String?
      var encoding = "raw"
      try reader.array { (reader, index) throws(CBORReader.Failure) in
        switch index {
        case 0:
          try reader.array { (reader, _) throws(CBORReader.Failure) in
            guard dims.count < 8 else { throw CBORReader.Failure("more than 8 dimensions") }
            dims.append(try reader.unsigned())
          }
        case 1:
          let tags = try reader.tags()
          dtype = tags.lazy.compactMap { typedArrays[$0] }.first
          guard tags.contains(56500) else {
            try reader.skip()
            return
          }
          var algorithm = ""
          var elementSize: UInt64 = 0
          try reader.array { (reader, index) throws(CBORReader.Failure) in
            switch index {
            case 0: algorithm = try reader.text()
            case 1: elementSize = try reader.unsigned()
            default: try reader.skip()
            }
          }
          switch algorithm {
          case "bslz4" where [1, 2, 4, 8].contains(elementSize): encoding = "bs\(elementSize * 8)-lz4"
          case "lz4": encoding = "lz4"
          default:
            throw CBORReader.Failure("unknown compression '\(algorithm)' (element size \(elementSize))")
          }
        default: try reader.skip()
        }
      }
      return (name, dims, dtype, encoding)
    }

    /// A rational time `[num, den]` in seconds as nanoseconds (text), or `num/den`.
    static func rationalNanos(_ numerator: UInt64, _ denominator: UInt64) -> String {
      guard denominator > 0 else { return "\(numerator)/\(denominator)" }
      let whole = numerator / denominator
      let fraction = numerator % denominator
      let (high, overflow) = whole.multipliedReportingOverflow(by: 1_000_000_000)
      let (quotient, _) = denominator.dividingFullWidth(fraction.multipliedFullWidth(by: 1_000_000_000))
      let (total, overflow2) = high.addingReportingOverflow(quotient)
      guard !overflow, !overflow2 else { return "\(numerator)/\(denominator)" }
      return String(total)
    }
  }
}
