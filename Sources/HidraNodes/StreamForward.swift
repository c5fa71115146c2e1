import HidraGraph
import HidraRuntime
import ZeroMQ

/// The `forward` formats `eiger-stream-v1` and `eiger-stream-v2`: the DECTRIS
/// stream re-emitted, so several stream readers can share one detector.
///
/// Readers written for the detector connect a PULL socket, so the forward must
/// look like the detector's PUSH socket. A ZeroMQ PUSH socket cannot address one
/// peer (it round-robins every message, and skips a peer whose queue is full),
/// and a ROUTER socket cannot talk to PULL peers at all, so neither can give the
/// series header to *every* reader. With `listen:` the forward therefore speaks
/// ZMTP 3.0 (the PUSH side, NULL security) itself on plain sockets
/// (`ZMTPPushServer`): each reader is its own connection, series start and end go
/// to every connected reader, images to one reader each, in turn, skipping
/// readers whose queue is full. With `connect:` there is one reader by
/// construction, and a ZeroMQ PUSH socket serves it.
enum StreamForward {
  /// One message of the detector stream: its ZeroMQ parts, each the bytes of
  /// one or more payloads (sent without copying where possible).
  struct Message {
    var parts: [[Payload]]
    var byteCount: Int { parts.reduce(0) { $0 + $1.reduce(0) { $0 + $1.count } } }
  }

  /// What becomes of one frame.
  enum Outcome {
    /// A series start or end: for every reader.
    case broadcast(Message, opensSeries: Bool)
    /// An image: for one reader.
    case image(Message)
    /// Nothing to send (e.g. the end of a series whose start was refused).
    case skip
    /// Cannot be expressed in this stream version: counted and dropped.
    case refused(kind: String, message: String)
  }

  /// Turns frames into stream messages of one version.
  ///
  /// v2 passes the CBOR messages of a stream-v2 source through unchanged (the
  /// end message is rebuilt only when the source made the series end up).
  /// v1 sends the header parts a stream-v1 source kept (its first part from the
  /// attribute `dheader`) and the blob of each image untouched; the image's
  /// JSON parts are written again from the frame's metadata in DECTRIS's key
  /// order. Neither converts images between versions: a v2 image is a CBOR
  /// message whose data would have to be decoded and re-framed, and a v1 image
  /// lacks most of what a v2 `start` must hold.
  struct Encoder {
    let version: Int
    /// The open series: its `series_unique_id` (v2), and whether its start was refused.
    var uniqueID: String?
    var refusedSeries: Int?

    init(version: Int) { self.version = version }

    static func bytes(_ text: String) -> [Payload] { [Payload(copying: Array(text.utf8))] }

    mutating func encode(_ frame: Frame) -> Outcome {
      let meta = frame.meta
      let cbor = meta.contentType == "application/cbor" || meta.encoding == "cbor"
      switch frame.kind {
      case .seriesStart:
        refusedSeries = nil
        uniqueID = meta.attributes["series_unique_id"]
        if version == 2 {
          guard cbor, !frame.parts.isEmpty else {
            refusedSeries = meta.series
            return .refused(
              kind: "not-stream-v2",
              message:
                "series \(meta.series) did not come from a stream-v2 (CBOR) source; eiger-stream-v2 re-emits CBOR messages unchanged and converts nothing (use eiger-stream-v1)"
            )
          }
          return .broadcast(Message(parts: [Array(frame.parts)]), opensSeries: true)
        }
        guard !cbor else {
          refusedSeries = meta.series
          return .refused(
            kind: "not-stream-v1",
            message:
              "series \(meta.series) came from stream v2 (CBOR); eiger-stream-v1 cannot convert it (use eiger-stream-v2)"
          )
        }
        let first =
          meta.attributes["dheader"]
          ?? "{\"htype\":\"dheader-1.0\",\"series\":\(meta.series),\"header_detail\":\"\(Self.detail(meta))\"}"
        let rest = Self.detail(meta) == "none" && meta.attributes["dheader"] == nil ? [] : frame.parts
        return .broadcast(Message(parts: [Self.bytes(first)] + rest.map { [$0] }), opensSeries: true)
      case .seriesEnd:
        defer {
          refusedSeries = nil
          uniqueID = nil
        }
        if refusedSeries == meta.series { return .skip }
        if version == 2 {
          if meta.contentType == "application/cbor", !frame.parts.isEmpty {
            return .broadcast(Message(parts: [Array(frame.parts)]), opensSeries: false)
          }
          return .broadcast(
            Message(parts: [[Payload(copying: Self.cborEnd(meta.series, uniqueID))]]), opensSeries: false)
        }
        if meta.contentType == "application/json", !frame.parts.isEmpty {
          return .broadcast(Message(parts: [Array(frame.parts)]), opensSeries: false)
        }
        return .broadcast(
          Message(parts: [Self.bytes("{\"htype\":\"dseries_end-1.0\",\"series\":\(meta.series)}")]),
          opensSeries: false)
      case .data:
        if version == 2 {
          guard cbor else {
            return .refused(
              kind: "not-stream-v2",
              message: "'\(meta.name)' is not a stream-v2 CBOR image; eiger-stream-v2 converts nothing")
          }
          return .image(Message(parts: [Array(frame.parts)]))
        }
        guard !cbor else {
          return .refused(
            kind: "not-stream-v1",
            message: "'\(meta.name)' is a stream-v2 CBOR image; eiger-stream-v1 cannot convert it")
        }
        return Self.v1Image(frame)
      }
    }

    static func detail(_ meta: FrameMeta) -> String {
      let detail = meta.attributes["header_detail"] ?? "none"
      return ["all", "basic", "none"].contains(detail) ? detail : "none"
    }

    /// A v1 image message: `dimage`, `dimage_d`, the blob, `dconfig`, and the appendix if kept.
    static func v1Image(_ frame: Frame) -> Outcome {
      let meta = frame.meta
      guard let shape = meta.shape, !shape.isEmpty, let dtype = meta.dtype, isName(dtype),
        let encoding = v1Encoding(meta.encoding)
      else {
        return .refused(
          kind: "not-stream-v1",
          message:
            "'\(meta.name)' has no image shape, element type or stream encoding (raw, lz4, bs<bits>-lz4); it cannot be sent as a stream-v1 image"
        )
      }
      let hash = meta.checksums["md5"] ?? meta.attributes["hash"] ?? ""
      let dimage =
        "{\"htype\":\"dimage-1.0\",\"series\":\(meta.series),\"frame\":\(meta.frame),\"hash\":\"\(jsonEscaped(hash))\"}"
      let dimageD =
        "{\"htype\":\"dimage_d-1.0\",\"shape\":[\(shape.map(String.init).joined(separator: ","))],"
        + "\"type\":\"\(dtype)\",\"encoding\":\"\(encoding)\",\"size\":\(frame.byteCount)}"
      var times: [String] = []
      for key in ["start_time", "stop_time", "real_time"] {
        if let value = meta.attributes[key], isNumber(value) { times.append("\"\(key)\":\(value)") }
      }
      let dconfig = "{\"htype\":\"dconfig-1.0\"" + times.map { "," + $0 }.joined() + "}"
      var parts = [
        bytes(dimage), bytes(dimageD), frame.parts.isEmpty ? [Payload.empty] : Array(frame.parts),
        bytes(dconfig),
      ]
      if let appendix = meta.attributes["appendix"] { parts.append(bytes(appendix)) }
      return .image(Message(parts: parts))
    }

    /// Hidra's encoding name as a v1 `encoding` (little-endian, as EIGERs send).
    static func v1Encoding(_ encoding: String) -> String? {
      switch encoding {
      case "raw": return "<"
      case "lz4": return "lz4<"
      case "bs8-lz4", "bs16-lz4", "bs32-lz4", "bs64-lz4": return encoding + "<"
      default: return nil
      }
    }

    static func isName(_ text: String) -> Bool {
      !text.isEmpty
        && text.utf8.allSatisfy { $0 < 0x80 && ($0 == UInt8(ascii: "_") || isalnum(Int32($0)) != 0) }
    }

    /// A JSON number as the source read it (integers and decimals).
    static func isNumber(_ text: String) -> Bool {
      let allowed = Set("0123456789-+.eE".utf8)
      return !text.isEmpty && text.utf8.allSatisfy { allowed.contains($0) } && Double(text) != nil
    }

    static func jsonEscaped(_ text: String) -> String {
      var out = ""
      for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
        default: out.unicodeScalars.append(scalar)
        }
      }
      return out
    }

    /// A v2 `end` message: `{type: end, series_id, series_unique_id}`, self-described.
    static func cborEnd(_ series: Int, _ uniqueID: String?) -> [UInt8] {
      var bytes: [UInt8] = [0xd9, 0xd9, 0xf7, uniqueID == nil ? 0xa2 : 0xa3]
      func head(_ major: UInt8, _ value: UInt64) {
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
      func text(_ value: String) {
        head(3, UInt64(value.utf8.count))
        bytes += value.utf8
      }
      text("type")
      text("end")
      text("series_id")
      head(0, UInt64(max(0, series)))
      if let uniqueID {
        text("series_unique_id")
        text(uniqueID)
      }
      return bytes
    }
  }
}

#if canImport(Glibc)
  import Glibc
#endif

extension StreamForward {
  /// The running forward.
  struct Body: StageBody {
    let version: Int
    let endpoint: ZMQEndpoint
    let highWaterMark: Int

    init(node: Node) {
      version = node["format"]?.string == "eiger-stream-v2" ? 2 : 1
      endpoint = ZMQEndpoint(node)
      highWaterMark = max(4, min(node.inputs.map(\.qos.bufferFrames).min() ?? 64, 1000))
    }

    mutating func run(_ context: StageContext) throws {
      var encoder = Encoder(version: version)
      if endpoint.bind {
        let server = try ZMTPPushServer(listen: endpoint.address, highWaterMark: highWaterMark)
        defer { server.close() }
        while let frame = context.receive() {
          guard let message = outcome(encoder.encode(frame), frame, context) else { continue }
          guard server.send(message.0, broadcast: message.1, opensSeries: message.2, context) else { break }
          count(frame, context)
          report(server, context)
        }
        if !context.isAborted { server.drain(seconds: 5, context) }
        report(server, context)
        return
      }
      let socket = try Socket(.push, context: SharedZMQ.context)
      try socket.setOption(.sendHighWaterMark, Int32(highWaterMark))
      try socket.setOption(.linger, 0)
      try endpoint.attach(socket)
      while let frame = context.receive() {
        guard let message = outcome(encoder.encode(frame), frame, context) else { continue }
        guard try send(message.0, on: socket, context) else { break }
        count(frame, context)
      }
      if !context.isAborted { try? socket.setOption(.linger, 5000) }
      socket.close()
    }

    /// The message to send and how, or nil (refusals are counted here).
    func outcome(_ outcome: Outcome, _ frame: Frame, _ context: StageContext) -> (Message, Bool, Bool)? {
      switch outcome {
      case .broadcast(let message, let opens): return (message, true, opens)
      case .image(let message): return (message, false, false)
      case .skip: return nil
      case .refused(let kind, let message):
        context.reportError(kind, "frame dropped: \(message)")
        return nil
      }
    }

    func count(_ frame: Frame, _ context: StageContext) {
      context.counters.framesOut.add(1, ordering: .relaxed)
      context.counters.bytesOut.add(frame.byteCount, ordering: .relaxed)
    }

    func report(_ server: ZMTPPushServer, _ context: StageContext) {
      for event in server.takeEvents() {
        switch event {
        case .connected(let peer): Log.info("\(context.node.name): stream reader \(peer) connected")
        case .disconnected(let peer, let lost):
          if lost > 0 {
            context.reportError(
              "reader-lost", "stream reader \(peer) disconnected with \(lost) messages not yet sent to it")
          } else {
            Log.info("\(context.node.name): stream reader \(peer) disconnected")
          }
        case .refused(let peer, let reason):
          context.reportError("bad-peer", "connection from \(peer) closed: \(reason)")
        }
      }
    }

    /// Sends one message on the ZeroMQ PUSH socket (one reader): waits for room;
    /// false when the run was aborted while waiting.
    func send(_ message: Message, on socket: borrowing Socket, _ context: StageContext) throws -> Bool {
      var multipart = MultipartMessage(minimumCapacity: message.parts.count)
      for part in message.parts {
        if part.count == 1 {
          multipart.append(WireMessages.message(part[0], part[0].bytes))
        } else {
          var bytes: [UInt8] = []
          for payload in part { bytes += payload.bytes }
          multipart.append(ZeroMQ.Message(bytes))
        }
      }
      while true {
        if try socket.trySend(&multipart) { return true }
        if context.isAborted { return false }
        _ = try socket.poll(.writable, timeout: .milliseconds(200))
      }
    }
  }
}
