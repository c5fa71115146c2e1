/// Reads written values into checked `OptionValue`s according to their `OptionSpec`,
/// reporting every problem with its position.
struct OptionReader {
  var diagnostics = Diagnostics()
  /// What the mapping being read belongs to, for messages about nested mappings.
  private var subject = ""

  /// Reads the entries of a mapping against `specs`. Unknown keys are errors (with a
  /// suggestion), missing required options are errors at `owner`, absent options get
  /// their defaults. `extraKeys` are keys the caller handles itself. `subject` names
  /// the mapping in messages, e.g. "store node 'disk'".
  mutating func readMapping(
    _ entries: [ConfigEntry], specs: [OptionSpec], extraKeys: Set<String> = [], hintKeys: [String]? = nil,
    subject: String, owner: SourceLocation
  ) -> (values: [String: OptionValue], locations: [String: SourceLocation]) {
    let hintKeys = hintKeys ?? extraKeys.sorted()
    var values: [String: OptionValue] = [:]
    var locations: [String: SourceLocation] = [:]
    let outerSubject = self.subject
    self.subject = subject
    defer { self.subject = outerSubject }
    for entry in entries {
      if extraKeys.contains(entry.key) { continue }
      guard let spec = specs.first(where: { $0.name == entry.key }) else {
        let names = specs.map(\.name) + hintKeys.filter { key in !specs.contains { $0.name == key } }
        let hint =
          Suggest.hint(for: entry.key, in: names)
          ?? (names.isEmpty ? nil : "expected one of: " + names.joined(separator: ", "))
        let what =
          subject == "the graph"
          ? "unknown top-level key '\(entry.key)'" : "unknown option '\(entry.key)' for \(subject)"
        diagnostics.error(entry.keyLocation, what, hint: hint)
        continue
      }
      locations[entry.key] = entry.value.location
      if let value = read(entry.value, as: spec.type, option: entry.key) {
        values[entry.key] = value
      }
    }
    for spec in specs
    where values[spec.name] == nil && locations[spec.name] == nil && !extraKeys.contains(spec.name) {
      if spec.required {
        diagnostics.error(owner, "\(subject) is missing required option '\(spec.name)'")
      } else if let value = defaultValue(of: spec) {
        values[spec.name] = value
      }
    }
    return (values, locations)
  }

  /// The option's declared default, read with its own type.
  func defaultValue(of spec: OptionSpec) -> OptionValue? {
    if let text = spec.defaultValue {
      var reader = OptionReader()
      let location = SourceLocation(file: "<default>", line: 1, column: 1)
      let value = reader.read(
        ConfigValue(.scalar(text, quoted: false), at: location), as: spec.type, option: spec.name)
      precondition(
        !reader.diagnostics.hasErrors, "default of '\(spec.name)' does not read as \(spec.type.name)")
      return value
    }
    // A record without a written value still has its fields' defaults.
    if case .record(let fields) = spec.type {
      let defaults = fields.compactMap { field in defaultValue(of: field).map { (field.name, $0) } }
      return defaults.isEmpty ? nil : .record(Dictionary(uniqueKeysWithValues: defaults))
    }
    return nil
  }

  /// Reads one value. Returns nil (and reports) when it does not fit the type.
  mutating func read(_ value: ConfigValue, as type: OptionType, option: String) -> OptionValue? {
    if case .invalid = value.kind { return nil }  // already reported by the loader
    func mismatch(_ expected: String) -> OptionValue? {
      diagnostics.error(value.location, "'\(option)' expects \(expected), got \(value.kindDescription)")
      return nil
    }
    switch type {
    case .list(let element, let minCount):
      let items = value.items ?? (value.isNull ? [] : [value])
      if value.isNull { return mismatch("a list of \(element.name)") }
      if items.count < minCount {
        diagnostics.error(
          value.location, "'\(option)' needs at least \(minCount) item\(minCount == 1 ? "" : "s")")
        return nil
      }
      var output: [OptionValue] = []
      var ok = true
      for item in items {
        if let checked = read(item, as: element, option: option) {
          output.append(checked)
        } else {
          ok = false
        }
      }
      return ok ? .list(output) : nil
    case .record(let fields):
      guard let entries = value.entries else {
        return mismatch("a mapping with " + fields.map { "'\($0.name)'" }.joined(separator: ", "))
      }
      let before = diagnostics.all.count
      let (values, _) = readMapping(
        entries, specs: fields, subject: "'\(option)'" + (subject.isEmpty ? "" : " of \(subject)"),
        owner: value.location)
      return diagnostics.all.count == before ? .record(values) : nil
    case .dictionary(let element):
      guard let entries = value.entries else { return mismatch("a mapping of name to \(element.name)") }
      var output: [String: OptionValue] = [:]
      var ok = true
      for entry in entries {
        if let checked = read(entry.value, as: element, option: "\(option).\(entry.key)") {
          output[entry.key] = checked
        } else {
          ok = false
        }
      }
      return ok ? .record(output) : nil
    default:
      break
    }
    guard case .scalar(let text, _) = value.kind else {
      return mismatch(Self.expectation(type))
    }
    switch type {
    case .string:
      return .string(text)
    case .integer(let min, let max):
      guard let number = Int(text.replacingUnderscores) else { return mismatch(Self.expectation(type)) }
      if let min, number < min { return outOfRange(value, option, "at least \(min)") }
      if let max, number > max { return outOfRange(value, option, "at most \(max)") }
      return .integer(number)
    case .number(let min, let max):
      guard let number = Double(text.replacingUnderscores), number.isFinite else {
        return mismatch(Self.expectation(type))
      }
      if let min, number < min { return outOfRange(value, option, "at least \(Units.trim(min))") }
      if let max, number > max { return outOfRange(value, option, "at most \(Units.trim(max))") }
      return .number(number)
    case .boolean:
      switch text.lowercased() {
      case "true", "yes", "on": return .boolean(true)
      case "false", "no", "off": return .boolean(false)
      default: return mismatch("true or false")
      }
    case .size(let min):
      guard let bytes = Units.parseSize(text) else { return mismatch(Units.sizeForm) }
      if let min, bytes < min { return outOfRange(value, option, "at least \(Units.formatSize(min))") }
      return .bytes(bytes)
    case .duration:
      guard let seconds = Units.parseDuration(text) else { return mismatch(Units.durationForm) }
      return .seconds(seconds)
    case .rate:
      guard let rate = Units.parseRate(text) else { return mismatch(Units.rateForm) }
      guard rate > 0 else { return outOfRange(value, option, "more than 0") }
      return .perSecond(rate)
    case .choice(let words, let prefixes):
      if words.contains(text) { return .string(text) }
      if let prefix = prefixes.first(where: { text.hasPrefix($0) }) {
        guard text.count > prefix.count else {
          diagnostics.error(value.location, "'\(option)' needs an argument after '\(prefix)'")
          return nil
        }
        return .string(text)
      }
      let all = words + prefixes.map { "\($0)ARG" }
      diagnostics.error(
        value.location,
        "'\(option)' must be one of \(all.map { "'\($0)'" }.joined(separator: ", ")), got '\(text)'",
        hint: Suggest.hint(for: text, in: words))
      return nil
    case .endpoint(let schemes, let role):
      switch Endpoint.parse(text, schemes: schemes, role: role) {
      case .success: return .string(text)
      case .failure(let error): return problem(in: value, option, at: error.offset, error.message)
      }
    case .path:
      guard !text.isEmpty else { return mismatch("a path") }
      if text.contains("\0") {
        diagnostics.error(value.location, "'\(option)' contains a NUL character")
        return nil
      }
      return .string(text)
    case .template(let fields, let attributes):
      switch PathTemplate.parse(text, allowed: fields, attributes: attributes) {
      case .success: return .string(text)
      case .failure(let error):
        return problem(in: value, option, at: error.offset, error.message, hint: error.hint)
      }
    case .regex:
      do {
        _ = try Regex(text)
        return .string(text)
      } catch {
        diagnostics.error(
          value.location, "'\(option)' is not a valid regular expression: \(Self.firstLine(of: error))")
        return nil
      }
    case .glob:
      switch Glob.parse(text) {
      case .success: return .string(text)
      case .failure(let error): return problem(in: value, option, at: error.offset, error.message)
      }
    case .list, .record, .dictionary:
      return nil  // handled above
    case .input, .node:
      preconditionFailure("edges and nodes are read by GraphValidator, not as options")
    }
  }

  /// Reports a problem `offset` characters into a scalar's text; returns nil.
  private mutating func problem(
    in value: ConfigValue, _ option: String, at offset: Int, _ message: String, hint: String? = nil
  ) -> OptionValue? {
    diagnostics.error(value.location(ofOffset: offset), "'\(option)': \(message)", hint: hint)
    return nil
  }

  private mutating func outOfRange(_ value: ConfigValue, _ option: String, _ bound: String) -> OptionValue? {
    diagnostics.error(value.location, "'\(option)' must be \(bound), got \(value.scalar ?? "")")
    return nil
  }

  static func expectation(_ type: OptionType) -> String {
    switch type {
    case .string: return "a string"
    case .integer(let min, let max):
      switch (min, max) {
      case (let min?, nil): return "an integer >= \(min)"
      case (let min?, let max?): return "an integer from \(min) to \(max)"
      default: return "an integer"
      }
    case .number: return "a number"
    case .boolean: return "true or false"
    case .size: return Units.sizeForm
    case .duration: return Units.durationForm
    case .rate: return Units.rateForm
    case .choice: return type.name
    case .endpoint(let schemes, _):
      return "an endpoint (" + schemes.map { "\($0)://..." }.joined(separator: ", ") + ")"
    case .path: return "a path"
    case .template: return "a path template"
    case .regex: return "a regular expression"
    case .glob: return "a glob"
    case .list(let element, _): return "a list of \(element.name)"
    case .record: return "a mapping"
    case .dictionary(let element): return "a mapping of name to \(element.name)"
    case .input: return "a node name or a mapping with 'from:'"
    case .node: return "a mapping with 'type:'"
    }
  }

  static func firstLine(of error: any Error) -> String {
    String(describing: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
  }
}

extension String {
  /// `1_000_000` -> `1000000`, as YAML 1.1 allows in numbers.
  var replacingUnderscores: String { filter { $0 != "_" } }
}
