import Foundation

/// A parsed JSON value, as the per-frame decoders read it (Hidra's wire headers
/// and acknowledgements, the EIGER stream's image parts).
///
/// Parsing goes two ways. `JSONValue.object(parsing:)` first tries a small
/// strict reader for the plain JSON that Hidra and the detectors actually send:
/// strings without escapes, non-negative integers, arrays and objects. Whatever
/// it does not take (an escape, a float, a negative number, `true`, `false`,
/// `null`, a duplicate key, malformed text) goes to Foundation's
/// `JSONSerialization`, which decides as it always did. So the fast reader never
/// changes a result; it only answers sooner (a wire header in a sixth of the
/// time of the Foundation path, a third of `JSONSerialization`'s parse alone:
/// `hidra-bench wire`), and `JSONValueTests` compare the two paths on a corpus
/// and on thousands of mutated headers and acknowledgements.
public enum JSONValue: Sendable, Hashable {
  /// A JSON integer that fits in `Int`.
  case int(Int)
  /// Any other number (a float, or an integer beyond `UInt64`), as Foundation read it.
  case double(Double)
  /// An integer beyond `Int` (up to `UInt64.max`), which Foundation reads exactly.
  case unsigned(UInt64)
  case bool(Bool)
  case string(String)
  case array([JSONValue])
  case object([String: JSONValue])
  case null

  public var int: Int? {
    if case .int(let value) = self { return value }
    return nil
  }

  public var string: String? {
    if case .string(let value) = self { return value }
    return nil
  }

  public var array: [JSONValue]? {
    if case .array(let value) = self { return value }
    return nil
  }

  public var object: [String: JSONValue]? {
    if case .object(let value) = self { return value }
    return nil
  }

  /// A scalar as attribute text: strings as they are, numbers and booleans as
  /// JSON writes them; nil for arrays, objects and null.
  public var text: String? {
    switch self {
    case .string(let value): return value
    case .int(let value): return String(value)
    case .unsigned(let value): return String(value)
    case .double(let value): return String(value)
    case .bool(let value): return value ? "true" : "false"
    case .array, .object, .null: return nil
    }
  }

  /// The top-level object of `bytes` (UTF-8 JSON), or nil when it is not a JSON
  /// object. The fast reader answers when it can, Foundation otherwise.
  ///
  /// `foundationOnly` skips the fast reader: the reference path it is tested
  /// and measured against.
  public static func object(parsing bytes: UnsafeRawBufferPointer, foundationOnly: Bool = false) -> [String:
    JSONValue]?
  {
    if !foundationOnly {
      var reader = PlainJSONReader(bytes)
      if let object = reader.topLevelObject() { return object }
    }
    guard let parsed = try? JSONSerialization.jsonObject(with: Data(bytes)) else { return nil }
    return JSONValue(foundation: parsed)?.object
  }

  /// Converts what `JSONSerialization` returns (nil for anything else).
  public init?(foundation value: Any) {
    // Dispatched on the dynamic type: a failed `as?` cast to String or to a
    // class tries Objective-C bridging first, which costs more than the parse.
    let type = Swift.type(of: value)
    if type == String.self {
      self = .string(value as! String)
    } else if type is NSNumber.Type {
      let number = value as! NSNumber
      // Foundation on Linux casts booleans and whole floats to `Int` too: the
      // number's type decides.
      switch String(cString: number.objCType) {
      case "c", "B": self = .bool(number.boolValue)
      case "d", "f": self = .double(number.doubleValue)
      case let kind:
        if let int = value as? Int {
          self = .int(int)
        } else if kind == "Q" {
          self = .unsigned(number.uint64Value)
        } else {
          self = .double(number.doubleValue)
        }
      }
    } else if type == [Any].self {
      let list = value as! [Any]
      var values: [JSONValue] = []
      values.reserveCapacity(list.count)
      for element in list {
        guard let converted = JSONValue(foundation: element) else { return nil }
        values.append(converted)
      }
      self = .array(values)
    } else if type == [String: Any].self {
      let map = value as! [String: Any]
      var values: [String: JSONValue] = [:]
      values.reserveCapacity(map.count)
      for (key, element) in map {
        guard let converted = JSONValue(foundation: element) else { return nil }
        values[key] = converted
      }
      self = .object(values)
    } else if type is NSNull.Type {
      self = .null
    } else {
      return nil
    }
  }
}

/// The fast reader: strict JSON, but only the plain part of it. Every method
/// returns nil both for text that is not JSON and for JSON it leaves to
/// Foundation; the caller then asks Foundation, which tells the two apart.
struct PlainJSONReader {
  private let bytes: UnsafeRawBufferPointer
  private var at = 0
  /// Deeper nesting goes to Foundation.
  private static let maxDepth = 16

  init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

  /// An object and nothing after it but white space.
  mutating func topLevelObject() -> [String: JSONValue]? {
    skipSpace()
    guard peek() == UInt8(ascii: "{"), let object = object(depth: 0) else { return nil }
    skipSpace()
    return at == bytes.count ? object : nil
  }

  private func peek() -> UInt8? { at < bytes.count ? bytes[at] : nil }

  private mutating func skipSpace() {
    while at < bytes.count {
      switch bytes[at] {
      case 0x20, 0x09, 0x0A, 0x0D: at += 1
      default: return
      }
    }
  }

  private mutating func value(depth: Int) -> JSONValue? {
    guard let byte = peek() else { return nil }
    switch byte {
    case UInt8(ascii: "\""): return string().map(JSONValue.string)
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return integer().map(JSONValue.int)
    case UInt8(ascii: "["): return array(depth: depth + 1).map(JSONValue.array)
    case UInt8(ascii: "{"): return object(depth: depth + 1).map(JSONValue.object)
    default: return nil  // negative numbers, true, false, null, or not JSON
    }
  }

  /// `{` members `}`, at `{`.
  private mutating func object(depth: Int) -> [String: JSONValue]? {
    guard depth <= Self.maxDepth else { return nil }
    at += 1
    var members: [String: JSONValue] = [:]
    members.reserveCapacity(depth == 0 ? 16 : 4)
    skipSpace()
    if peek() == UInt8(ascii: "}") {
      at += 1
      return members
    }
    while true {
      skipSpace()
      guard peek() == UInt8(ascii: "\""), let key = string() else { return nil }
      skipSpace()
      guard peek() == UInt8(ascii: ":") else { return nil }
      at += 1
      skipSpace()
      guard let member = value(depth: depth) else { return nil }
      // A repeated key: Foundation's rule decides which one counts.
      guard members.updateValue(member, forKey: key) == nil else { return nil }
      skipSpace()
      switch peek() {
      case UInt8(ascii: ","): at += 1
      case UInt8(ascii: "}"):
        at += 1
        return members
      default: return nil
      }
    }
  }

  /// `[` values `]`, at `[`.
  private mutating func array(depth: Int) -> [JSONValue]? {
    guard depth <= Self.maxDepth else { return nil }
    at += 1
    var values: [JSONValue] = []
    skipSpace()
    if peek() == UInt8(ascii: "]") {
      at += 1
      return values
    }
    while true {
      skipSpace()
      guard let element = value(depth: depth) else { return nil }
      values.append(element)
      skipSpace()
      switch peek() {
      case UInt8(ascii: ","): at += 1
      case UInt8(ascii: "]"):
        at += 1
        return values
      default: return nil
      }
    }
  }

  /// A string without escapes or control characters, in valid UTF-8; at `"`.
  private mutating func string() -> String? {
    let start = at + 1
    var end = start
    var ascii = true
    while end < bytes.count {
      let byte = bytes[end]
      if byte == UInt8(ascii: "\"") { break }
      if byte == UInt8(ascii: "\\") || byte < 0x20 { return nil }
      if byte >= 0x80 { ascii = false }
      end += 1
    }
    guard end < bytes.count else { return nil }
    at = end + 1
    let text = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
    // ASCII is valid UTF-8 as it is; anything else is checked (and left to
    // Foundation when it is not valid).
    return ascii ? String(decoding: text, as: UTF8.self) : String(validating: text, as: UTF8.self)
  }

  /// A non-negative integer that fits in `Int`, without a fraction or exponent.
  private mutating func integer() -> Int? {
    var value = 0
    let start = at
    while let byte = peek(), byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
      let (times10, overflow) = value.multipliedReportingOverflow(by: 10)
      let (sum, overflow2) = times10.addingReportingOverflow(Int(byte - UInt8(ascii: "0")))
      guard !overflow, !overflow2 else { return nil }
      value = sum
      at += 1
    }
    // JSON has no leading zeros; a fraction or an exponent makes a float.
    if at - start > 1 && bytes[start] == UInt8(ascii: "0") { return nil }
    switch peek() {
    case UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E"): return nil
    default: return value
    }
  }
}
