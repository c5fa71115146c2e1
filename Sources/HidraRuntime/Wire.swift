import Foundation
import HidraGraph

/// Hidra's native wire protocol, version 1 (docs/wire.md): one ZeroMQ multipart
/// message per frame (or per chunk of a large frame): a JSON header part, then the
/// payload part(s).
public enum Wire {
  public static let version = 1
  /// Headers larger than this are rejected by receivers.
  public static let maxHeaderBytes = 65_536

  /// Where a chunk sits in its frame, for frames sent in several messages.
  public struct Chunk: Sendable, Hashable {
    /// Zero-based index of this chunk, and how many chunks the frame has.
    public var index: Int
    public var count: Int
    /// Byte offset of this chunk's payload in the frame.
    public var offset: Int

    public init(index: Int, count: Int, offset: Int) {
      self.index = index
      self.count = count
      self.offset = offset
    }
  }

  /// The header of one message, as encoded and decoded.
  public struct Header: Sendable, Hashable {
    public var kind: FrameKind
    public var meta: FrameMeta
    /// Total payload bytes of the frame (over all chunks).
    public var size: Int
    public var chunk: Chunk?
    /// The delivery number a consumer acknowledges, on frames from a forward
    /// that expects acknowledgements (`push`, `request`).
    public var seq: UInt64?
  }

  /// Encodes the header of `frame` (or of one chunk of it) as compact JSON.
  public static func encodeHeader(_ frame: Frame, chunk: Chunk? = nil, seq: UInt64? = nil) -> [UInt8] {
    let meta = frame.meta
    var json = "{\"hidra\":\(version),\"kind\":\"\(frame.kind.rawValue)\",\"id\":\(meta.id)"
    json += ",\"series\":\(meta.series),\"frame\":\(meta.frame),\"name\":\(Rendering.quote(meta.name))"
    json += ",\"created_ns\":\(meta.createdNanos),\"size\":\(frame.byteCount)"
    json +=
      ",\"content_type\":\(Rendering.quote(meta.contentType)),\"encoding\":\(Rendering.quote(meta.encoding))"
    if let shape = meta.shape { json += ",\"shape\":[" + shape.map(String.init).joined(separator: ",") + "]" }
    if let dtype = meta.dtype { json += ",\"dtype\":\(Rendering.quote(dtype))" }
    if !meta.checksums.isEmpty { json += ",\"checksums\":" + object(meta.checksums.dictionary) }
    if !meta.attributes.isEmpty { json += ",\"attributes\":" + object(meta.attributes) }
    if let chunk {
      json += ",\"chunk\":{\"index\":\(chunk.index),\"count\":\(chunk.count),\"offset\":\(chunk.offset)}"
    }
    if let seq { json += ",\"seq\":\(seq)" }
    return Array((json + "}").utf8)
  }

  private static func object(_ values: [String: String]) -> String {
    "{"
      + values.sorted { $0.key < $1.key }.map { "\(Rendering.quote($0.key)):\(Rendering.quote($0.value))" }
      .joined(separator: ",") + "}"
  }

  /// Why a received message was rejected; `kind` names the counter it goes to.
  public struct DecodeError: Error, Sendable, CustomStringConvertible {
    public var kind: String
    public var description: String
  }

  /// Decodes a header part. Throws `DecodeError` for anything that is not a
  /// version-1 header of sane size and types.
  ///
  /// `foundationOnly` skips the fast JSON reader (see `JSONValue`): the
  /// reference path, for tests and `hidra-bench wire`.
  public static func decodeHeader(_ bytes: UnsafeRawBufferPointer, foundationOnly: Bool = false) throws
    -> Header
  {
    func fail(_ kind: String, _ message: String) -> DecodeError {
      DecodeError(kind: kind, description: message)
    }
    guard bytes.count <= maxHeaderBytes else {
      throw fail("oversized-header", "header of \(bytes.count) bytes")
    }
    guard let object = JSONValue.object(parsing: bytes, foundationOnly: foundationOnly) else {
      throw fail("bad-header", "header is not a JSON object")
    }
    guard let version = object["hidra"]?.int else {
      throw fail("bad-header", "header has no 'hidra' version")
    }
    guard version == Self.version else {
      throw fail("wrong-version", "wire version \(version), expected \(Self.version)")
    }
    guard let kindText = object["kind"]?.string, let kind = FrameKind(rawValue: kindText) else {
      throw fail("bad-header", "unknown or missing 'kind'")
    }
    func int(_ key: String, default value: Int? = nil) throws -> Int {
      if let number = object[key]?.int, number >= 0 { return number }
      if object[key] == nil, let value { return value }
      throw fail("bad-header", "'\(key)' must be a non-negative integer")
    }
    func strings(_ key: String) throws -> [String: String] {
      guard let value = object[key] else { return [:] }
      guard let map = value.object, case let strings = map.compactMapValues(\.string),
        strings.count == map.count
      else {
        throw fail("bad-header", "'\(key)' must map names to strings")
      }
      return strings
    }
    var meta = FrameMeta(
      id: UInt64(try int("id", default: 0)), series: try int("series", default: 0),
      frame: try int("frame", default: 0),
      name: object["name"]?.string ?? "", createdNanos: UInt64(try int("created_ns", default: 0)))
    if let type = object["content_type"]?.string { meta.contentType = type }
    if let encoding = object["encoding"]?.string { meta.encoding = encoding }
    if let shape = object["shape"] {
      guard let list = shape.array, case let dims = list.compactMap(\.int),
        dims.count == list.count, dims.allSatisfy({ $0 >= 0 })
      else {
        throw fail("bad-header", "'shape' must be a list of sizes")
      }
      meta.shape = dims
    }
    meta.dtype = object["dtype"]?.string
    meta.checksums = Checksums(try strings("checksums"))
    meta.attributes = try strings("attributes")
    if meta.name.utf8.contains(0) { throw fail("bad-header", "'name' contains a NUL character") }
    var chunk: Chunk?
    if let value = object["chunk"] {
      guard let object = value.object, case let fields = object.compactMapValues(\.int),
        fields.count == object.count, let index = fields["index"], let count = fields["count"],
        let offset = fields["offset"], count >= 1, index >= 0, index < count, offset >= 0
      else { throw fail("bad-chunk", "'chunk' must be {index, count, offset} with 0 <= index < count") }
      chunk = Chunk(index: index, count: count, offset: offset)
    }
    var seq: UInt64?
    if object["seq"] != nil { seq = UInt64(try int("seq")) }
    return Header(kind: kind, meta: meta, size: try int("size"), chunk: chunk, seq: seq)
  }
}

extension Wire {
  /// What a consumer sends back to a `push` or `request` forward (docs/wire.md,
  /// "Acknowledgements"): one JSON part, `{"hidra": 1, "type": ..., ...}`.
  public enum Control: Sendable, Hashable {
    /// "I am here and may hold `credit` unacknowledged frames." Sent first and
    /// then at least every second as the keep-alive. `session` (any short
    /// string, new for each run of the consumer) lets a forward that connects
    /// to one consumer tell a restarted consumer from a live one.
    case ready(credit: Int, session: String?)
    /// Done with these frames (`seqs`), and could not take these (`failed`).
    /// Each returns one credit.
    case ack(seqs: [UInt64], failed: [UInt64])
    /// Still here (sent at least every second while idle).
    case heartbeat
    /// `request` pattern: send me the newest frame.
    case next
    /// Leaving: resend what I did not acknowledge to others.
    case bye

    /// The most frames one consumer may hold unacknowledged.
    public static let maxCredit = 4096
    /// The most sequence numbers in one `ack`.
    public static let maxAcks = 65_536

    public func encoded() -> [UInt8] {
      let body: String
      switch self {
      case .ready(let credit, let session):
        body =
          "\"type\":\"ready\",\"credit\":\(credit)"
          + (session.map { ",\"session\":\(Rendering.quote($0))" } ?? "")
      case .ack(let seqs, let failed):
        body =
          "\"type\":\"ack\",\"seqs\":[" + seqs.map(String.init).joined(separator: ",") + "]"
          + (failed.isEmpty ? "" : ",\"failed\":[" + failed.map(String.init).joined(separator: ",") + "]")
      case .heartbeat: body = "\"type\":\"heartbeat\""
      case .next: body = "\"type\":\"next\""
      case .bye: body = "\"type\":\"bye\""
      }
      return Array("{\"hidra\":\(Wire.version),\(body)}".utf8)
    }

    /// Decodes a consumer's message; throws `DecodeError` (kind `bad-control`
    /// or `wrong-version`) for anything else.
    /// `foundationOnly` as for `Wire.decodeHeader`.
    public static func decode(_ bytes: UnsafeRawBufferPointer, foundationOnly: Bool = false) throws -> Control
    {
      func fail(_ message: String, kind: String = "bad-control") -> DecodeError {
        DecodeError(kind: kind, description: message)
      }
      guard bytes.count <= Wire.maxHeaderBytes * 16 else {
        throw fail("control message of \(bytes.count) bytes")
      }
      guard let object = JSONValue.object(parsing: bytes, foundationOnly: foundationOnly) else {
        throw fail("control message is not a JSON object")
      }
      guard let version = object["hidra"]?.int else {
        throw fail("control message has no 'hidra' version")
      }
      guard version == Wire.version else {
        throw fail("wire version \(version), expected \(Wire.version)", kind: "wrong-version")
      }
      func numbers(_ key: String) throws -> [UInt64] {
        guard let value = object[key] else { return [] }
        guard let list = value.array, list.count <= maxAcks, case let seqs = list.compactMap(\.int),
          seqs.count == list.count, seqs.allSatisfy({ $0 >= 0 })
        else { throw fail("'\(key)' must be a list of at most \(maxAcks) sequence numbers") }
        return seqs.map { UInt64($0) }
      }
      switch object["type"]?.string {
      case "ready":
        guard let credit = object["credit"]?.int, (1...maxCredit).contains(credit) else {
          throw fail("'ready' needs a 'credit' from 1 to \(maxCredit)")
        }
        let session = object["session"]?.string
        guard session.map({ $0.utf8.count <= 256 }) ?? true else {
          throw fail("'session' is longer than 256 bytes")
        }
        return .ready(credit: credit, session: session)
      case "ack": return .ack(seqs: try numbers("seqs"), failed: try numbers("failed"))
      case "heartbeat": return .heartbeat
      case "next": return .next
      case "bye": return .bye
      case let other: throw fail("unknown control message type \(other.map { "'\($0)'" } ?? "(none)")")
      }
    }
  }
}
