/// A relative file path with placeholders, such as `{series}/{series}_{frame:06}.bin`.
///
/// `{name}` inserts a field; `{name:06}` pads a number with zeros to six digits and
/// `{name:6}` with spaces; `{{` and `}}` are literal braces. The result must stay
/// below the node's root, so templates are relative and have no `..` component.
public struct PathTemplate: Sendable, Hashable {
  public enum Segment: Sendable, Hashable {
    case literal(String)
    case field(name: String, width: Int, zeroPad: Bool)
  }

  public var segments: [Segment] {
    didSet { pieces = Pieces(segments) }
  }

  /// `segments` as rendering reads them, kept in step with them.
  private var pieces: Pieces

  public init(segments: [Segment]) {
    self.segments = segments
    self.pieces = Pieces(segments)
  }

  // Equal and hashed by the segments (the pieces follow from them).
  public static func == (lhs: PathTemplate, rhs: PathTemplate) -> Bool { lhs.segments == rhs.segments }
  public func hash(into hasher: inout Hasher) { hasher.combine(segments) }

  /// The segments as plain numbers over one array of the literals' bytes, so
  /// that a render (once per frame, in a source) copies no string out of an
  /// enum and counts no reference: walking `segments` itself retained and
  /// released every literal and name, about a fifth of a render.
  private struct Pieces: Sendable {
    enum Piece {
      case literal(start: Int, count: Int)
      /// `position`: the field's place in `fields`.
      case field(position: Int, width: Int, zeroPad: Bool)
    }
    var list: [Piece] = []
    var literals: [UInt8] = []
    /// Field names by position.
    var names: [String] = []

    init(_ segments: [Segment]) {
      for segment in segments {
        switch segment {
        case .literal(let text):
          list.append(.literal(start: literals.count, count: text.utf8.count))
          literals += text.utf8
        case .field(let name, let width, let zeroPad):
          list.append(.field(position: names.count, width: width, zeroPad: zeroPad))
          names.append(name)
        }
      }
    }
  }

  /// The field names the template uses, in order.
  public var fields: [String] {
    segments.compactMap {
      if case .field(let name, _, _) = $0 { return name }
      return nil
    }
  }

  /// A problem in a template, at `offset` unicode scalars into its text.
  public struct ParseError: Error, Sendable {
    public var offset: Int
    public var message: String
    public var hint: String?
  }

  /// Parses `text`, accepting the `allowed` fields and, if `attributes`, any `attr.NAME`.
  public static func parse(_ text: String, allowed: [String], attributes: Bool) -> Result<
    PathTemplate, ParseError
  > {
    let scalars = Array(text.unicodeScalars)
    if scalars.first == "/" {
      return .failure(
        ParseError(offset: 0, message: "a path template must be relative to the root, not start with '/'"))
    }
    var segments: [Segment] = []
    var literal = String.UnicodeScalarView()
    var i = 0
    while i < scalars.count {
      let c = scalars[i]
      if c == "}" {
        guard i + 1 < scalars.count, scalars[i + 1] == "}" else {
          return .failure(
            ParseError(
              offset: i, message: "unmatched '}' in path template", hint: "write '}}' for a literal brace"))
        }
        literal.append("}")
        i += 2
        continue
      }
      guard c == "{" else {
        literal.append(c)
        i += 1
        continue
      }
      if i + 1 < scalars.count, scalars[i + 1] == "{" {
        literal.append("{")
        i += 2
        continue
      }
      guard let close = scalars[(i + 1)...].firstIndex(of: "}") else {
        return .failure(
          ParseError(
            offset: i, message: "unclosed '{' in path template", hint: "write '{{' for a literal brace"))
      }
      let body = String(String.UnicodeScalarView(scalars[(i + 1)..<close]))
      let parts = body.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
      let name = String(parts[0])
      let known = allowed.contains(name) || (attributes && name.hasPrefix("attr.") && name.count > 5)
      guard known else {
        var hint = Suggest.hint(for: name, in: allowed)
        if hint == nil {
          hint = "known fields: " + allowed.joined(separator: ", ") + (attributes ? ", attr.NAME" : "")
        }
        return .failure(
          ParseError(offset: i + 1, message: "unknown field '\(name)' in path template", hint: hint))
      }
      var width = 0
      var zeroPad = false
      if parts.count == 2 {
        let spec = parts[1]
        guard let number = Int(spec), number >= 0, number <= 64, spec.allSatisfy(\.isNumber) else {
          return .failure(
            ParseError(
              offset: i + 1 + name.count + 1,
              message: "format '\(spec)' of field '\(name)' is not a width such as 06 or 4"))
        }
        width = number
        zeroPad = spec.hasPrefix("0")
      }
      if !literal.isEmpty {
        segments.append(.literal(String(literal)))
        literal = String.UnicodeScalarView()
      }
      segments.append(.field(name: name, width: width, zeroPad: zeroPad))
      i = close + 1
    }
    if !literal.isEmpty { segments.append(.literal(String(literal))) }
    // `..` components could climb out of the root.
    var offset = 0
    for component in text.split(separator: "/", omittingEmptySubsequences: false) {
      if component == ".." {
        return .failure(ParseError(offset: offset, message: "a path template must not contain '..'"))
      }
      offset += component.unicodeScalars.count + 1
    }
    return .success(PathTemplate(segments: segments))
  }

  /// A field's value: text, or a number (formatted and padded without making a
  /// string of its own).
  public enum FieldValue {
    case text(String)
    case integer(Int)
  }

  /// Fills the template. `value` returns a field's text (numbers are padded here).
  public func render(_ value: (String) -> String) -> String {
    render { .text(value($0)) }
  }

  /// Fills the template with text and numbers. Sources call this for every frame,
  /// so the result is assembled in a buffer on the stack and becomes one string:
  /// no string per number, per padding or per concatenation.
  public func render(_ value: (String) -> FieldValue) -> String {
    let names = pieces.names
    return renderByPosition { value(names[$0]) }
  }

  /// Fills the template, asking for each field by its position in `fields`: a
  /// caller that resolved the names once (a source, for every frame) compares
  /// no strings.
  public func renderByPosition(_ value: (Int) -> FieldValue) -> String {
    let rendered = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: Self.stackBytes) { buffer in
      var writer = ByteWriter(buffer: buffer)
      pieces.literals.withUnsafeBufferPointer { literals in
        for piece in pieces.list {
          switch piece {
          case .literal(let start, let count):
            writer.append(UnsafeBufferPointer(rebasing: literals[start..<(start + count)]))
          case .field(let position, let width, let zeroPad):
            switch value(position) {
            case .integer(let number): writer.append(number, width: width, zeroPad: zeroPad)
            case .text(let text): writer.append(text, width: width, zeroPad: zeroPad)
            }
          }
        }
      }
      return writer.overflowed ? nil : String(decoding: buffer[..<writer.count], as: UTF8.self)
    }
    return rendered ?? renderAsStrings(value)
  }

  /// Names longer than this are put together as strings.
  private static let stackBytes = 512

  private func renderAsStrings(_ value: (Int) -> FieldValue) -> String {
    var output = ""
    for piece in pieces.list {
      switch piece {
      case .literal(let start, let count):
        output += String(decoding: pieces.literals[start..<(start + count)], as: UTF8.self)
      case .field(let position, let width, let zeroPad):
        let text: String
        switch value(position) {
        case .integer(let number): text = String(number)
        case .text(let string): text = string
        }
        output += Self.padded(text, width: width, zeroPad: zeroPad)
      }
    }
    return output
  }

  /// `text` padded on the left to `width` characters, with spaces or zeros; zeros
  /// go after a leading minus sign.
  static func padded(_ text: String, width: Int, zeroPad: Bool) -> String {
    guard text.count < width else { return text }
    let pad = String(repeating: zeroPad ? "0" : " ", count: width - text.count)
    return zeroPad && text.hasPrefix("-") ? "-" + pad + text.dropFirst() : pad + text
  }

  /// Appends UTF-8 to a fixed buffer, remembering whether it ran out of room.
  private struct ByteWriter {
    let buffer: UnsafeMutableBufferPointer<UInt8>
    var count = 0
    var overflowed = false

    mutating func append(_ byte: UInt8) {
      guard count < buffer.count else {
        overflowed = true
        return
      }
      buffer[count] = byte
      count += 1
    }

    mutating func append(_ bytes: UnsafeBufferPointer<UInt8>) {
      guard let source = bytes.baseAddress else { return }
      guard count + bytes.count <= buffer.count else {
        overflowed = true
        return
      }
      (buffer.baseAddress! + count).update(from: source, count: bytes.count)
      count += bytes.count
    }

    mutating func append(_ text: String) {
      var text = text
      text.withUTF8 { append($0) }
    }

    mutating func append(_ text: String, width: Int, zeroPad: Bool) {
      if width == 0 || text.count >= width {
        append(text)
      } else {
        append(PathTemplate.padded(text, width: width, zeroPad: zeroPad))
      }
    }

    /// A decimal number, padded as `padded` pads its text, written in place.
    mutating func append(_ number: Int, width: Int, zeroPad: Bool) {
      var magnitude = number.magnitude
      var digits = 1
      var rest = magnitude
      while rest >= 10 {
        rest /= 10
        digits += 1
      }
      let negative = number < 0
      let pad = max(0, width - digits - (negative ? 1 : 0))
      let total = pad + digits + (negative ? 1 : 0)
      guard count + total <= buffer.count else {
        overflowed = true
        return
      }
      // Sign and padding first: "-00042" with zeros, "   -42" with spaces.
      var at = count
      let sign = UInt8(ascii: "-")
      let padding = zeroPad ? UInt8(ascii: "0") : UInt8(ascii: " ")
      if negative && zeroPad {
        buffer[at] = sign
        at += 1
      }
      for _ in 0..<pad {
        buffer[at] = padding
        at += 1
      }
      if negative && !zeroPad {
        buffer[at] = sign
        at += 1
      }
      var end = at + digits
      repeat {
        end -= 1
        buffer[end] = UInt8(ascii: "0") + UInt8(magnitude % 10)
        magnitude /= 10
      } while magnitude > 0
      count += total
    }
  }
}

/// Shell-style globs: `*` (any run of characters but `/`), `**` (any run, `/`
/// included), `?` (one character but `/`), `[abc]`, `[a-z]`, `[!abc]`, and `\x` for
/// a literal `x`.
public struct Glob: Sendable, Hashable {
  public let pattern: String

  public struct ParseError: Error, Sendable {
    public var offset: Int
    public var message: String
  }

  public static func parse(_ pattern: String) -> Result<Glob, ParseError> {
    let scalars = Array(pattern.unicodeScalars)
    if scalars.isEmpty { return .failure(ParseError(offset: 0, message: "a glob must not be empty")) }
    var i = 0
    while i < scalars.count {
      switch scalars[i] {
      case "\\":
        guard i + 1 < scalars.count else {
          return .failure(ParseError(offset: i, message: "a glob must not end with '\\'"))
        }
        i += 2
      case "[":
        var j = i + 1
        if j < scalars.count, scalars[j] == "!" || scalars[j] == "^" { j += 1 }
        if j < scalars.count, scalars[j] == "]" { j += 1 }
        while j < scalars.count, scalars[j] != "]" { j += 1 }
        guard j < scalars.count else {
          return .failure(ParseError(offset: i, message: "unclosed '[' in glob"))
        }
        i = j + 1
      default:
        i += 1
      }
    }
    return .success(Glob(pattern: pattern))
  }

  /// True when `text` matches the whole pattern.
  public func matches(_ text: String) -> Bool {
    Self.match(Array(pattern.unicodeScalars)[...], Array(text.unicodeScalars)[...])
  }

  private static func match(_ p: ArraySlice<Unicode.Scalar>, _ t: ArraySlice<Unicode.Scalar>) -> Bool {
    var p = p
    var t = t
    while let c = p.first {
      switch c {
      case "*":
        let deep = p.dropFirst().first == "*"
        let rest = p.dropFirst(deep ? 2 : 1)
        // `**/` also matches no directory at all.
        if deep, rest.first == "/", match(rest.dropFirst(), t) { return true }
        var u = t
        while true {
          if match(rest, u) { return true }
          guard let next = u.first, deep || next != "/" else { return false }
          u = u.dropFirst()
        }
      case "?":
        guard let next = t.first, next != "/" else { return false }
        p = p.dropFirst()
        t = t.dropFirst()
      case "[":
        guard let next = t.first, let (matched, length) = matchClass(p, next) else { return false }
        guard matched else { return false }
        p = p.dropFirst(length)
        t = t.dropFirst()
      case "\\":
        guard p.count > 1, t.first == p[p.startIndex + 1] else { return false }
        p = p.dropFirst(2)
        t = t.dropFirst()
      default:
        guard t.first == c else { return false }
        p = p.dropFirst()
        t = t.dropFirst()
      }
    }
    return t.isEmpty
  }

  /// Matches one character against the class at the start of `p`; returns whether
  /// it matched and the class's length in the pattern.
  private static func matchClass(_ p: ArraySlice<Unicode.Scalar>, _ c: Unicode.Scalar) -> (Bool, Int)? {
    var i = p.startIndex + 1
    var negate = false
    if i < p.endIndex, p[i] == "!" || p[i] == "^" {
      negate = true
      i += 1
    }
    var matched = false
    var first = true
    while i < p.endIndex, p[i] != "]" || first {
      first = false
      if i + 2 < p.endIndex, p[i + 1] == "-", p[i + 2] != "]" {
        if p[i] <= c && c <= p[i + 2] { matched = true }
        i += 3
      } else {
        if p[i] == c { matched = true }
        i += 1
      }
    }
    guard i < p.endIndex else { return nil }
    return (matched != negate, i - p.startIndex + 1)
  }
}
