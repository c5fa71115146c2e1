/// A YAML value as written, with the place it was written.
///
/// The loader turns libyaml's tree into this small, `Sendable` value so that the
/// rest of HidraGraph never depends on Yams, and every check can point at the
/// exact line and column of what it complains about.
public struct ConfigValue: Sendable {
  public enum Kind: Sendable {
    /// A scalar; `quoted` is true for single- or double-quoted and block scalars,
    /// which YAML never reads as a number, boolean or null.
    case scalar(String, quoted: Bool)
    case mapping([ConfigEntry])
    case sequence([ConfigValue])
    /// `~`, `null` or nothing at all.
    case null
    /// A scalar whose `${VAR}` substitution failed; the error is already reported,
    /// so nothing checks it further.
    case invalid
  }

  public var kind: Kind
  /// Where the value starts (for a quoted scalar, its opening quote).
  public var location: SourceLocation
  /// For a scalar: the column offset, from `location`, of each Unicode scalar of
  /// its text as read, so a problem inside the text points at the right column
  /// even after quotes and `${VAR}` substitution. Nil for other values.
  var columnOffsets: [Int]?

  public init(_ kind: Kind, at location: SourceLocation, columnOffsets: [Int]? = nil) {
    self.kind = kind
    self.location = location
    self.columnOffsets = columnOffsets
  }

  /// The place of the `offset`-th Unicode scalar of this scalar's text.
  public func location(ofOffset offset: Int) -> SourceLocation {
    guard let columnOffsets, !columnOffsets.isEmpty else { return location.advanced(by: offset) }
    if offset < columnOffsets.count { return location.advanced(by: columnOffsets[offset]) }
    return location.advanced(by: columnOffsets[columnOffsets.count - 1] + 1 + offset - columnOffsets.count)
  }

  /// The scalar's text, or nil for mappings, sequences and null.
  public var scalar: String? {
    if case .scalar(let text, _) = kind { return text }
    return nil
  }

  public var entries: [ConfigEntry]? {
    if case .mapping(let entries) = kind { return entries }
    return nil
  }

  public var items: [ConfigValue]? {
    if case .sequence(let items) = kind { return items }
    return nil
  }

  public var isNull: Bool {
    if case .null = kind { return true }
    return false
  }

  /// The entry for `key` in a mapping, or nil.
  public subscript(key: String) -> ConfigEntry? {
    entries?.first { $0.key == key }
  }

  /// How a user would name this kind of value in an error message.
  public var kindDescription: String {
    switch kind {
    case .scalar(let text, let quoted):
      if !quoted, Double(text.replacingUnderscores) != nil { return "the number \(text)" }
      return "the string '\(text)'"
    case .mapping: return "a mapping"
    case .sequence: return "a list"
    case .null: return "nothing (null)"
    case .invalid: return "an invalid value"
    }
  }
}

/// One `key: value` pair of a mapping, with the place of the key.
public struct ConfigEntry: Sendable {
  public var key: String
  public var keyLocation: SourceLocation
  public var value: ConfigValue

  public init(key: String, keyLocation: SourceLocation, value: ConfigValue) {
    self.key = key
    self.keyLocation = keyLocation
    self.value = value
  }
}
