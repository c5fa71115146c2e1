import Yams

/// Reads graph files into located values.
///
/// YAML syntax errors become diagnostics with libyaml's position. `${NAME}` and
/// `${NAME:-default}` in scalar values are replaced from the environment; `$$` is a
/// literal `$`. An unset variable without a default is an error at its position.
public struct GraphLoader: Sendable {
  public var environment: [String: String]

  public init(environment: [String: String]) {
    self.environment = environment
  }

  /// Parses `text` (the contents of `file`) into a value tree. Returns nil when the
  /// document cannot be parsed at all; the reason is in `diagnostics`.
  public func load(text: String, file: String, diagnostics: inout Diagnostics) -> ConfigValue? {
    let root: Yams.Node?
    do {
      root = try Yams.compose(yaml: text, .basic, .default, .utf8)
    } catch let error as YamlError {
      diagnostics.append(Self.diagnostic(for: error, file: file, text: text))
      return nil
    } catch {
      diagnostics.error(SourceLocation(file: file, line: 1, column: 1), "cannot read YAML: \(error)")
      return nil
    }
    guard let root else {
      diagnostics.error(SourceLocation(file: file, line: 1, column: 1), "the file is empty")
      return nil
    }
    return convert(root, file: file, diagnostics: &diagnostics)
  }

  private func convert(_ node: Yams.Node, file: String, diagnostics: inout Diagnostics) -> ConfigValue {
    let location = Self.location(node.mark, file: file)
    switch node {
    case .scalar(let scalar):
      let quoted = scalar.style != .plain
      if !quoted, ["", "~", "null", "Null", "NULL"].contains(scalar.string) {
        return ConfigValue(.null, at: location)
      }
      let opening = (scalar.style == .singleQuoted || scalar.style == .doubleQuoted) ? 1 : 0
      guard
        let (text, offsets) = substitute(
          scalar.string, at: location, opening: opening, diagnostics: &diagnostics)
      else { return ConfigValue(.invalid, at: location) }
      return ConfigValue(.scalar(text, quoted: quoted), at: location, columnOffsets: offsets)
    case .mapping(let mapping):
      var entries: [ConfigEntry] = []
      for (key, value) in mapping {
        let keyLocation = Self.location(key.mark, file: file)
        guard let name = key.scalar?.string else {
          diagnostics.error(keyLocation, "a mapping key must be a plain name, not a mapping or list")
          continue
        }
        entries.append(
          ConfigEntry(
            key: name, keyLocation: keyLocation,
            value: convert(value, file: file, diagnostics: &diagnostics)))
      }
      return ConfigValue(.mapping(entries), at: location)
    case .sequence(let sequence):
      return ConfigValue(
        .sequence(sequence.map { convert($0, file: file, diagnostics: &diagnostics) }), at: location)
    case .alias:
      // Yams resolves aliases while composing; an unresolved one is a broken document.
      diagnostics.error(location, "unresolved YAML alias")
      return ConfigValue(.null, at: location)
    }
  }

  /// Replaces `${NAME}` / `${NAME:-default}` / `$$` in `text`, which starts
  /// `opening` columns after `location`. Returns the text and the column offset of
  /// each of its Unicode scalars, or nil (with an error reported) when a variable
  /// cannot be substituted.
  func substitute(
    _ text: String, at location: SourceLocation, opening: Int, diagnostics: inout Diagnostics
  ) -> (String, [Int])? {
    let scalars = Array(text.unicodeScalars)
    guard scalars.contains("$") else { return (text, scalars.indices.map { $0 + opening }) }
    var output = String.UnicodeScalarView()
    var offsets: [Int] = []
    var failed = false
    func emit<S: Sequence>(_ values: S, at column: Int, spread: Bool = false)
    where S.Element == Unicode.Scalar {
      for (index, value) in values.enumerated() {
        output.append(value)
        offsets.append(column + (spread ? index : 0))
      }
    }
    var i = 0
    while i < scalars.count {
      let c = scalars[i]
      let column = i + opening
      guard c == "$", i + 1 < scalars.count, scalars[i + 1] == "$" || scalars[i + 1] == "{" else {
        emit([c], at: column)
        i += 1
        continue
      }
      if scalars[i + 1] == "$" {
        emit(["$"], at: column)
        i += 2
        continue
      }
      guard let close = scalars[(i + 2)...].firstIndex(of: "}") else {
        diagnostics.error(
          location.advanced(by: column), "'${' without a closing '}'", hint: "write '$$' for a literal '$'")
        return nil
      }
      let body = String(String.UnicodeScalarView(scalars[(i + 2)..<close]))
      let name: String
      let fallback: String?
      if let range = body.firstRange(of: ":-") {
        name = String(body[..<range.lowerBound])
        fallback = String(body[range.upperBound...])
      } else {
        name = body
        fallback = nil
      }
      if !Self.isVariableName(name) {
        diagnostics.error(
          location.advanced(by: column), "'\(name)' is not a valid environment variable name",
          hint: "names are letters, digits and '_', not starting with a digit")
        failed = true
      } else if let value = environment[name] {
        emit(value.unicodeScalars, at: column)
      } else if let fallback {
        // The default is written in the file: its characters keep their own columns.
        emit(fallback.unicodeScalars, at: column + 2 + name.unicodeScalars.count + 2, spread: true)
      } else {
        diagnostics.error(
          location.advanced(by: column), "environment variable '\(name)' is not set",
          hint: "set it, or give a default with '${\(name):-default}'")
        failed = true
      }
      i = close + 1
    }
    return failed ? nil : (String(output), offsets)
  }

  static func isVariableName(_ name: String) -> Bool {
    guard let first = name.unicodeScalars.first, !("0"..."9").contains(first) else { return false }
    return name.unicodeScalars.allSatisfy {
      $0 == "_" || ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0)
    }
  }

  static func location(_ mark: Mark?, file: String) -> SourceLocation {
    SourceLocation(file: file, line: mark?.line ?? 1, column: mark?.column ?? 1)
  }

  static func diagnostic(for error: YamlError, file: String, text: String) -> Diagnostic {
    switch error {
    case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
      .composer(let context, let problem, let mark, _):
      // For an unclosed quote or bracket libyaml notices the problem far away (often
      // at the end of the file); the place to fix is where the construct opened.
      if let context, context.text.contains("quoted scalar") || context.text.contains("flow") {
        return Diagnostic(
          .error, at: location(context.mark, file: file),
          "YAML syntax error: \(context.text.replacing("while scanning ", with: "").replacing("while parsing ", with: "")) that starts here is not closed (\(problem) at \(mark.line):\(mark.column))"
        )
      }
      var message = "YAML syntax error: \(problem)"
      if let context { message += " (\(context.text) at \(context.mark.line):\(context.mark.column))" }
      return Diagnostic(
        .error, at: location(mark, file: file), message, hint: syntaxHint(problem, at: mark, in: text))
    case .duplicatedKeysInMapping(let duplicates, let context):
      let first = context.mark
      let key = duplicates.first ?? ""
      let second = secondOccurrence(of: key, after: first, in: text)
      let place =
        second.map { SourceLocation(file: file, line: $0.line, column: $0.column) }
        ?? location(first, file: file)
      return Diagnostic(
        .error, at: place,
        "key '\(key)' appears twice in the same mapping"
          + (second != nil ? " (first at \(first.line):\(first.column))" : ""))
    case .reader(let problem, let offset, _, _):
      return Diagnostic(
        .error, at: SourceLocation(file: file, line: 1, column: 1),
        "cannot read the file as UTF-8 text: \(problem)\(offset.map { " at byte \($0)" } ?? "")")
    default:
      return Diagnostic(
        .error, at: SourceLocation(file: file, line: 1, column: 1), "cannot read YAML: \(error)")
    }
  }

  /// A hint for libyaml's terser messages.
  static func syntaxHint(_ problem: String, at mark: Mark, in text: String) -> String? {
    let line =
      text.split(separator: "\n", omittingEmptySubsequences: false).dropFirst(mark.line - 1).first ?? ""
    let character = line.unicodeScalars.dropFirst(mark.column - 1).first
    if character == "\t" || (problem.contains("cannot start any token") && line.contains("\t")) {
      return "YAML does not allow tabs for indentation; use spaces"
    }
    if problem.contains("did not find expected key") || problem.contains("mapping values are not allowed") {
      return "check the indentation of this line and the lines above it"
    }
    return nil
  }

  /// Where `key` is written again after `first`: at the same column in a block
  /// mapping, or later on the same line in a flow mapping.
  static func secondOccurrence(of key: String, after first: Mark, in text: String) -> (
    line: Int, column: Int
  )? {
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    func isKey(_ line: Substring, at column: Int) -> Bool {
      let scalars = Array(line.unicodeScalars)
      let keyScalars = Array(key.unicodeScalars)
      guard column - 1 + keyScalars.count <= scalars.count,
        Array(scalars[(column - 1)..<(column - 1 + keyScalars.count)]) == keyScalars
      else { return false }
      let rest = scalars[(column - 1 + keyScalars.count)...].drop { $0 == " " }
      return rest.first == ":"
    }
    guard first.line >= 1, first.line <= lines.count else { return nil }
    let firstLine = lines[first.line - 1]
    let width = firstLine.unicodeScalars.count
    if width > first.column {
      for column in (first.column + 1)...width where isKey(firstLine, at: column) {
        let before = Array(firstLine.unicodeScalars)[column - 2]
        if before == " " || before == "{" || before == "," { return (first.line, column) }
      }
    }
    for index in first.line..<lines.count {
      let line = lines[index]
      let indent = line.unicodeScalars.prefix { $0 == " " }.count
      if indent + 1 < first.column, !line.allSatisfy({ $0 == " " }), !line.hasPrefix("#") { break }
      if isKey(line, at: first.column), indent + 1 == first.column { return (index + 1, first.column) }
    }
    return nil
  }
}
