/// Where something was written: a file, a line and a column, all as the user sees
/// them in an editor (lines and columns start at 1; columns count Unicode scalars).
public struct SourceLocation: Hashable, Sendable, Comparable, CustomStringConvertible {
  public var file: String
  public var line: Int
  public var column: Int

  public init(file: String, line: Int, column: Int) {
    self.file = file
    self.line = line
    self.column = column
  }

  /// `FILE:LINE:COLUMN`, the form editors and compilers use.
  public var description: String { "\(file):\(line):\(column)" }

  /// The same place shifted right by `columns` (for a problem inside a scalar).
  public func advanced(by columns: Int) -> SourceLocation {
    SourceLocation(file: file, line: line, column: column + columns)
  }

  public static func < (a: SourceLocation, b: SourceLocation) -> Bool {
    (a.file, a.line, a.column) < (b.file, b.line, b.column)
  }
}

/// One problem found in a graph.
///
/// Rendered as `FILE:LINE:COLUMN: error|warning: message`, with the hint appended
/// as `; did you mean 'x'?` or similar.
public struct Diagnostic: Hashable, Sendable, CustomStringConvertible {
  public enum Severity: String, Sendable, Comparable, Codable {
    case warning
    case error

    public static func < (a: Severity, b: Severity) -> Bool { a == .warning && b == .error }
  }

  public var severity: Severity
  public var location: SourceLocation
  public var message: String
  /// A suggestion such as "did you mean 'algorithms'?", or nil.
  public var hint: String?

  public init(_ severity: Severity, at location: SourceLocation, _ message: String, hint: String? = nil) {
    self.severity = severity
    self.location = location
    self.message = message
    self.hint = hint
  }

  public var description: String {
    var text = "\(location): \(severity.rawValue): \(message)"
    if let hint { text += "; \(hint)" }
    return text
  }
}

/// Collects diagnostics while a graph is checked, so every problem is reported in
/// one pass rather than one per run.
public struct Diagnostics: Sendable {
  public private(set) var all: [Diagnostic] = []

  public init() {}

  public var hasErrors: Bool { all.contains { $0.severity == .error } }
  public var errors: [Diagnostic] { all.filter { $0.severity == .error } }
  public var warnings: [Diagnostic] { all.filter { $0.severity == .warning } }

  public mutating func error(_ location: SourceLocation, _ message: String, hint: String? = nil) {
    all.append(Diagnostic(.error, at: location, message, hint: hint))
  }

  public mutating func warning(_ location: SourceLocation, _ message: String, hint: String? = nil) {
    all.append(Diagnostic(.warning, at: location, message, hint: hint))
  }

  public mutating func append(_ diagnostic: Diagnostic) { all.append(diagnostic) }
  public mutating func append(contentsOf other: Diagnostics) { all.append(contentsOf: other.all) }

  /// In file order, errors before warnings at the same place; exact repeats removed.
  public var sorted: [Diagnostic] {
    var seen = Set<Diagnostic>()
    return all.filter { seen.insert($0).inserted }.sorted {
      ($0.location, $1.severity, $0.message) < ($1.location, $0.severity, $1.message)
    }
  }
}
