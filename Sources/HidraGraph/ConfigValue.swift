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
  }

  public var kind: Kind
  public var location: SourceLocation

  public init(_ kind: Kind, at location: SourceLocation) {
    self.kind = kind
    self.location = location
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
      if !quoted, Int(text) != nil { return "the number \(text)" }
      return "the string '\(text)'"
    case .mapping: return "a mapping"
    case .sequence: return "a list"
    case .null: return "nothing (null)"
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
