/// A frame's digests by algorithm name (`xxh3`, `sha256`, ...), as lowercase hex.
///
/// Reads and writes like a `[String: String]`. The 64-bit digests a checksum
/// node makes on every frame (`xxh3`, `xxh64`) are kept as integers inside the
/// frame's metadata and spelled out only when read: a dictionary and a
/// 16-character string per frame were two allocations on the producing thread
/// and two frees on whichever thread dropped the frame (glibc's arenas make
/// that a lock both threads take), about a fifth of a 4 KiB frame's cost.
///
/// A 64-bit digest is kept as an integer only in its canonical spelling (16
/// lowercase hex digits); anything else (a digest from a peer in another case
/// or length) is kept as the text it came as, so reading gives back exactly
/// what was written.
public struct Checksums: Sendable, Hashable, Sequence, ExpressibleByDictionaryLiteral {
  private var xxh3: UInt64?
  private var xxh64: UInt64?
  private var others = [String: String]()  // not `[:]`: the literal goes through a variadic init

  public init() {}

  public init(_ digests: [String: String]) {
    for (algorithm, digest) in digests { self[algorithm] = digest }
  }

  public init(dictionaryLiteral elements: (String, String)...) {
    for (algorithm, digest) in elements { self[algorithm] = digest }
  }

  public subscript(algorithm: String) -> String? {
    get {
      switch algorithm {
      case "xxh3" where xxh3 != nil: return Self.hex(xxh3!)
      case "xxh64" where xxh64 != nil: return Self.hex(xxh64!)
      default: return others[algorithm]
      }
    }
    set {
      let value = newValue.flatMap(Self.canonical)
      switch algorithm {
      case "xxh3" where value != nil || xxh3 != nil:
        xxh3 = value
      case "xxh64" where value != nil || xxh64 != nil:
        xxh64 = value
      default:
        others[algorithm] = newValue
        return
      }
      if value == nil, let newValue {
        others[algorithm] = newValue  // no longer an integer: kept as its text
      } else if !others.isEmpty {
        // An integer now, or removed: no text form may linger. (An empty
        // dictionary is left alone: even removing from it would allocate.)
        others[algorithm] = nil
      }
    }
  }

  /// The algorithms whose digests are kept as integers.
  public enum Integer: String, Sendable, CaseIterable {
    case xxh3, xxh64
  }

  /// Sets a 64-bit digest (`xxh3`, `xxh64`) without spelling it out.
  public mutating func set(_ algorithm: String, _ digest: UInt64) {
    guard let integer = Integer(rawValue: algorithm) else {
      others[algorithm] = Self.hex(digest)
      return
    }
    set(integer, digest)
  }

  /// Sets a 64-bit digest without spelling it out, or even comparing names (a
  /// checksum node does this for every frame).
  public mutating func set(_ algorithm: Integer, _ digest: UInt64) {
    switch algorithm {
    case .xxh3: xxh3 = digest
    case .xxh64: xxh64 = digest
    }
    if !others.isEmpty { others[algorithm.rawValue] = nil }
  }

  public var isEmpty: Bool { xxh3 == nil && xxh64 == nil && others.isEmpty }
  public var count: Int { (xxh3 == nil ? 0 : 1) + (xxh64 == nil ? 0 : 1) + others.count }

  /// Every digest, as a dictionary.
  public var dictionary: [String: String] {
    var all = others
    if let xxh3 { all["xxh3"] = Self.hex(xxh3) }
    if let xxh64 { all["xxh64"] = Self.hex(xxh64) }
    return all
  }

  public func makeIterator() -> Dictionary<String, String>.Iterator { dictionary.makeIterator() }

  /// 16 lowercase hex digits.
  public static func hex(_ value: UInt64) -> String {
    String(unsafeUninitializedCapacity: 16) { buffer in
      for index in 0..<16 {
        let nibble = UInt8((value >> UInt64(60 - 4 * index)) & 15)
        buffer[index] = nibble < 10 ? 0x30 + nibble : 0x57 + nibble
      }
      return 16
    }
  }

  /// The value of a canonically spelled 64-bit digest, else nil.
  static func canonical(_ text: String) -> UInt64? {
    var value: UInt64 = 0
    var digits = 0
    for byte in text.utf8 {
      let nibble: UInt8
      switch byte {
      case 0x30...0x39: nibble = byte - 0x30
      case 0x61...0x66: nibble = byte - 0x57
      default: return nil
      }
      value = value << 4 | UInt64(nibble)
      digits += 1
      if digits > 16 { return nil }
    }
    return digits == 16 ? value : nil
  }
}
