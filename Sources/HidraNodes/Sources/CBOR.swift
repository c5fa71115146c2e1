/// A minimal CBOR (RFC 8949) reader over borrowed bytes: just enough to find the
/// fields of a DECTRIS stream v2 message without decoding (or copying) its data.
///
/// Every length is checked against the bytes left before it is used, nesting is
/// bounded, and nothing is allocated for skipped items: any input either reads
/// or throws `CBORReader.Failure`.
struct CBORReader {
  struct Failure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
  }

  /// The head of a data item: major type 0-7, and its argument (nil for an
  /// indefinite length, or for the "break" stop code with major type 7).
  struct Head {
    var major: UInt8
    var info: UInt8
    var argument: UInt64?
  }

  /// A scalar read where a number or a text is expected.
  enum Scalar {
    case unsigned(UInt64)
    case negative(UInt64)  // the value is -1 - n
    case float(Double)
    case text(String)
    case bool(Bool)
    case null

    /// The value as attribute text.
    var text: String {
      switch self {
      case .unsigned(let value): return String(value)
      case .negative(let value): return value == .max ? "-18446744073709551616" : "-" + String(value + 1)
      case .float(let value): return String(value)
      case .text(let value): return value
      case .bool(let value): return value ? "true" : "false"
      case .null: return "null"
      }
    }
  }

  /// Deepest nesting of arrays, maps and tags accepted.
  static let maxDepth = 64

  let bytes: UnsafeRawBufferPointer
  var offset: Int

  init(_ bytes: UnsafeRawBufferPointer, offset: Int = 0) {
    self.bytes = bytes
    self.offset = offset
  }

  var remaining: Int { bytes.count - offset }

  mutating func byte() throws(Failure) -> UInt8 {
    guard offset < bytes.count else { throw Failure("unexpected end at byte \(offset)") }
    defer { offset += 1 }
    return bytes[offset]
  }

  /// The next byte without taking it.
  func peek() throws(Failure) -> UInt8 {
    guard offset < bytes.count else { throw Failure("unexpected end at byte \(offset)") }
    return bytes[offset]
  }

  mutating func head() throws(Failure) -> Head {
    let initial = try byte()
    let major = initial >> 5
    let info = initial & 0x1f
    switch info {
    case 0..<24: return Head(major: major, info: info, argument: UInt64(info))
    case 24...27:
      let count = 1 << Int(info - 24)
      guard remaining >= count else { throw Failure("head argument beyond the end at byte \(offset)") }
      var value: UInt64 = 0
      for _ in 0..<count { value = value << 8 | UInt64(bytes[offset]); offset += 1 }
      return Head(major: major, info: info, argument: value)
    case 31:
      guard major >= 2, major != 6 else { throw Failure("indefinite length for major type \(major)") }
      return Head(major: major, info: info, argument: nil)
    default: throw Failure("reserved additional information \(info) at byte \(offset - 1)")
    }
  }

  /// A definite length as an `Int` no larger than the bytes left (each item
  /// takes at least `unit` bytes).
  func length(_ argument: UInt64, unit: Int) throws(Failure) -> Int {
    guard argument <= UInt64(remaining / unit) else {
      throw Failure("length \(argument) beyond the \(remaining) bytes left at byte \(offset)")
    }
    return Int(argument)
  }

  /// Whether the next byte is the "break" that ends an indefinite-length item (taken if so).
  mutating func takeBreak() throws(Failure) -> Bool {
    guard try peek() == 0xff else { return false }
    offset += 1
    return true
  }

  /// Skips one complete data item.
  mutating func skip(depth: Int = 0) throws(Failure) {
    guard depth < Self.maxDepth else { throw Failure("nested deeper than \(Self.maxDepth)") }
    let head = try head()
    switch head.major {
    case 0, 1: return
    case 2, 3:
      if let argument = head.argument {
        offset += try length(argument, unit: 1)
        return
      }
      // Indefinite string: definite chunks of the same major type, then a break.
      while !(try takeBreak()) {
        let chunk = try self.head()
        guard chunk.major == head.major, let argument = chunk.argument else {
          throw Failure("bad chunk in an indefinite-length string")
        }
        offset += try length(argument, unit: 1)
      }
    case 4, 5:
      let items = head.major == 4 ? 1 : 2
      if let argument = head.argument {
        let count = try length(argument, unit: items)
        for _ in 0..<(count * items) { try skip(depth: depth + 1) }
      } else {
        while !(try takeBreak()) {
          for _ in 0..<items { try skip(depth: depth + 1) }
        }
      }
    case 6: try skip(depth: depth + 1)
    default:
      guard head.argument != nil else { throw Failure("unexpected break at byte \(offset - 1)") }
      if head.info == 24, let argument = head.argument, argument < 32 {
        throw Failure("simple value \(argument) in two bytes")
      }
    }
  }

  /// Skips any tags; returns them, outermost first.
  mutating func tags() throws(Failure) -> [UInt64] {
    var found: [UInt64] = []
    while try peek() >> 5 == 6 {
      guard found.count < Self.maxDepth else { throw Failure("more than \(Self.maxDepth) tags") }
      let head = try head()
      found.append(head.argument ?? 0)
    }
    return found
  }

  /// A text string (definite or indefinite), at most `limit` bytes.
  mutating func text(limit: Int = 1 << 16) throws(Failure) -> String {
    _ = try tags()
    let head = try head()
    guard head.major == 3 else { throw Failure("expected a text string, found major type \(head.major)") }
    var utf8: [UInt8] = []
    func take(_ argument: UInt64) throws(Failure) {
      let count = try length(argument, unit: 1)
      guard utf8.count + count <= limit else { throw Failure("text longer than \(limit) bytes") }
      utf8 += UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + count])
      offset += count
    }
    if let argument = head.argument {
      try take(argument)
    } else {
      while !(try takeBreak()) {
        let chunk = try self.head()
        guard chunk.major == 3, let argument = chunk.argument else { throw Failure("bad text chunk") }
        try take(argument)
      }
    }
    guard let string = String(validating: utf8, as: UTF8.self) else { throw Failure("text is not UTF-8") }
    return string
  }

  /// An unsigned integer (tags allowed before it).
  mutating func unsigned() throws(Failure) -> UInt64 {
    _ = try tags()
    let head = try head()
    guard head.major == 0, let argument = head.argument else {
      throw Failure("expected an unsigned integer, found major type \(head.major)")
    }
    return argument
  }

  /// A number, text, boolean or null; nil (with the item skipped) for anything else.
  mutating func scalar() throws(Failure) -> Scalar? {
    _ = try tags()
    let start = offset
    let head = try head()
    switch (head.major, head.argument) {
    case (0, let value?): return .unsigned(value)
    case (1, let value?): return .negative(value)
    case (3, _):
      offset = start
      return .text(try text())
    case (7, let value?):
      switch head.info {
      case 20, 21: return .bool(head.info == 21)
      case 22: return .null
      case 25: return .float(Double(Float16(bitPattern: UInt16(value))))
      case 26: return .float(Double(Float(bitPattern: UInt32(value))))
      case 27: return .float(Double(bitPattern: value))
      default: return nil
      }
    default:
      offset = start
      try skip()
      return nil
    }
  }

  /// Reads a definite or indefinite array, calling `element` once per item
  /// (which must read or skip exactly that item).
  mutating func array(_ element: (inout CBORReader, Int) throws(Failure) -> Void) throws(Failure) {
    _ = try tags()
    let head = try head()
    guard head.major == 4 else { throw Failure("expected an array, found major type \(head.major)") }
    if let argument = head.argument {
      for index in 0..<(try length(argument, unit: 1)) { try element(&self, index) }
    } else {
      var index = 0
      while !(try takeBreak()) {
        try element(&self, index)
        index += 1
      }
    }
  }

  /// Reads a definite or indefinite map, calling `entry` with each text key
  /// (which must read or skip the value); entries with other keys are skipped.
  mutating func map(_ entry: (inout CBORReader, String) throws(Failure) -> Void) throws(Failure) {
    _ = try tags()
    let head = try head()
    guard head.major == 5 else { throw Failure("expected a map, found major type \(head.major)") }
    func one() throws(Failure) {
      _ = try tags()
      if try peek() >> 5 == 3 {
        let key = try text()
        try entry(&self, key)
      } else {
        try skip()
        try skip()
      }
    }
    if let argument = head.argument {
      for _ in 0..<(try length(argument, unit: 2)) { try one() }
    } else {
      while !(try takeBreak()) { try one() }
    }
  }
}
