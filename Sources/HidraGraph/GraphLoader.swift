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
      diagnostics.append(Self.diagnostic(for: error, file: file))
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
      let text = substitute(scalar.string, at: location.advanced(by: opening), diagnostics: &diagnostics)
      return ConfigValue(.scalar(text, quoted: quoted), at: location)
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

  /// Replaces `${NAME}` / `${NAME:-default}` / `$$` in `text`.
  func substitute(_ text: String, at location: SourceLocation, diagnostics: inout Diagnostics) -> String {
    guard text.contains("$") else { return text }
    let scalars = Array(text.unicodeScalars)
    var output = String.UnicodeScalarView()
    var i = 0
    while i < scalars.count {
      let c = scalars[i]
      guard c == "$", i + 1 < scalars.count else {
        output.append(c)
        i += 1
        continue
      }
      if scalars[i + 1] == "$" {
        output.append("$")
        i += 2
        continue
      }
      guard scalars[i + 1] == "{" else {
        output.append(c)
        i += 1
        continue
      }
      guard let close = scalars[(i + 2)...].firstIndex(of: "}") else {
        diagnostics.error(
          location.advanced(by: i), "'${' without a closing '}'", hint: "write '$$' for a literal '$'")
        output.append(contentsOf: scalars[i...])
        break
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
          location.advanced(by: i), "'\(name)' is not a valid environment variable name",
          hint: "names are letters, digits and '_', not starting with a digit")
      } else if let value = environment[name] {
        output.append(contentsOf: value.unicodeScalars)
      } else if let fallback {
        output.append(contentsOf: fallback.unicodeScalars)
      } else {
        diagnostics.error(
          location.advanced(by: i), "environment variable '\(name)' is not set",
          hint: "set it, or give a default with '${\(name):-default}'")
      }
      i = close + 1
    }
    return String(output)
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

  static func diagnostic(for error: YamlError, file: String) -> Diagnostic {
    switch error {
    case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
      .composer(let context, let problem, let mark, _):
      var message = "YAML syntax error: \(problem)"
      if let context { message += " (\(context.text) at \(context.mark.line):\(context.mark.column))" }
      return Diagnostic(.error, at: location(mark, file: file), message)
    case .duplicatedKeysInMapping(let duplicates, let context):
      let names = duplicates.map { "'\($0)'" }.joined(separator: ", ")
      return Diagnostic(
        .error, at: location(context.mark, file: file),
        "key \(names) appears more than once in the same mapping")
    case .reader(let problem, let offset, _, _):
      return Diagnostic(
        .error, at: SourceLocation(file: file, line: 1, column: 1),
        "cannot read the file as UTF-8 text: \(problem)\(offset.map { " at byte \($0)" } ?? "")")
    default:
      return Diagnostic(
        .error, at: SourceLocation(file: file, line: 1, column: 1), "cannot read YAML: \(error)")
    }
  }
}
