/// The six kinds of node a graph is made of.
public enum NodeKind: String, Sendable, CaseIterable, Hashable {
  case source, filter, split, checksum, store, forward

  /// Sources make frames and take no input.
  public var takesInput: Bool { self != .source }
  /// Stores and forwards are sinks: frames leave the graph there.
  public var isSink: Bool { self == .store || self == .forward }
  /// Forwards end the graph. A store may pass each frame on once it is durable
  /// (with its path in the `stored_path` attribute), e.g. to announce it.
  public var hasOutput: Bool { self != .forward }

  public var summary: String {
    switch self {
    case .source: return "brings frames into the graph (detector stream, directory, HTTP, ZeroMQ, generator)"
    case .filter: return "passes on the frames that match its conditions"
    case .split: return "sends frames to several consumers (broadcast, round-robin or by key)"
    case .checksum: return "computes or verifies checksums of every frame, in place"
    case .store: return "writes frames to files, atomically"
    case .forward: return "sends frames out of the graph to consumers over the network"
    }
  }
}

/// What an endpoint option does with its address; listen addresses must be unique per host.
public enum EndpointRole: String, Sendable, Hashable {
  case listen, connect
}

/// What a path option names; `exclusiveRoot` paths of different nodes must not overlap.
public enum PathRole: String, Sendable, Hashable {
  case file, directory, exclusiveRoot
}

/// The type of an option's value, which decides how it is read and checked.
public indirect enum OptionType: Sendable {
  case string
  case integer(min: Int? = nil, max: Int? = nil)
  case number(min: Double? = nil, max: Double? = nil)
  case boolean
  /// Bytes, written with units: `4096`, `64KiB`, `2GiB`.
  case size(min: UInt64? = nil)
  /// Seconds, written with units: `500ms`, `10s`.
  case duration
  /// Per second, written as `10/s`, `600/min` or `1kHz`.
  case rate
  /// One of fixed words; `prefixes` also allows `word:ARGUMENT` (e.g. `move:DIR`).
  case choice([String], prefixes: [String] = [])
  /// A ZeroMQ or HTTP address, with the schemes it may use.
  case endpoint(schemes: [String], role: EndpointRole)
  case path(PathRole)
  /// A file path template with `{field}` or `{field:06}` placeholders.
  case template(fields: [String], attributes: Bool)
  /// A regular expression (Swift Regex syntax, close to PCRE).
  case regex
  /// A shell glob: `*`, `?`, `[abc]`, `**` for any depth.
  case glob
  /// A list; a single value is accepted as a list of one.
  case list(OptionType, minCount: Int = 0)
  /// A mapping with declared keys.
  case record([OptionSpec])
  /// A mapping with free keys and values of one type.
  case dictionary(OptionType)
  /// An edge: a node name, or a mapping with `from:` and the edge options
  /// (`GraphLanguage.edgeOptions`). Read by the validator itself.
  case input
  /// A node: a mapping with `type:` and that type's options. Read by the validator itself.
  case node

  /// How the type is named in errors and in the reference.
  public var name: String {
    switch self {
    case .string: return "string"
    case .integer(let min, let max): return "integer" + Self.range(min.map(String.init), max.map(String.init))
    case .number(let min, let max):
      return "number" + Self.range(min.map { Units.trim($0) }, max.map { Units.trim($0) })
    case .boolean: return "boolean"
    case .size: return "size"
    case .duration: return "duration"
    case .rate: return "rate"
    case .choice(let words, let prefixes):
      return "one of " + (words + prefixes.map { "\($0)ARG" }).map { "`\($0)`" }.joined(separator: ", ")
    case .endpoint(let schemes, let role):
      return "\(role.rawValue) endpoint (" + schemes.map { "\($0)://" }.joined(separator: ", ") + ")"
    case .path(let role): return role == .file ? "file path" : "directory path"
    case .template: return "path template"
    case .regex: return "regular expression"
    case .glob: return "glob"
    case .list(let element, _): return "list of \(element.name)"
    case .record: return "mapping"
    case .dictionary(let element): return "mapping of name to \(element.name)"
    case .input: return "node name or edge mapping"
    case .node: return "node"
    }
  }

  private static func range(_ low: String?, _ high: String?) -> String {
    switch (low, high) {
    case (nil, nil): return ""
    case (let low?, nil): return " >= \(low)"
    case (nil, let high?): return " <= \(high)"
    case (let low?, let high?): return " \(low)..\(high)"
    }
  }
}

/// One option of a node type (or of an edge, or of a nested mapping), declared once.
///
/// Validation, `hidra-run nodes` and `docs/graph-reference.md` all read this
/// declaration; nothing else restates it.
public struct OptionSpec: Sendable {
  public var name: String
  public var type: OptionType
  public var required: Bool
  /// The value used when the option is absent, as a user would write it.
  public var defaultValue: String?
  /// One line: what the option does.
  public var doc: String

  public init(
    _ name: String, _ type: OptionType, required: Bool = false, default defaultValue: String? = nil,
    doc: String
  ) {
    self.name = name
    self.type = type
    self.required = required
    self.defaultValue = defaultValue
    self.doc = doc
  }
}

/// A rule between several options of one node, checked after each option on its own.
public enum OptionConstraint: Sendable {
  /// Exactly one of these options must be given.
  case exactlyOne([String])
  /// At most one of these options may be given.
  case atMostOne([String])
  /// When `option` has the value `value`, `requires` must be given too.
  case requires(option: String, value: String, requires: String)
  /// `option` is only meaningful when `when` has one of `values`.
  case onlyWhen(option: String, when: String, values: [String])
}

/// Everything a node type declares about itself.
public struct NodeTypeSpec: Sendable {
  public typealias Check = @Sendable (inout NodeCheck) -> Void

  /// The name written after `type:`, such as `eiger-stream`.
  public var name: String
  public var kind: NodeKind
  /// One line for listings.
  public var summary: String
  /// A paragraph for the reference.
  public var details: String
  public var options: [OptionSpec]
  public var constraints: [OptionConstraint]
  /// A check of rules that do not fit `constraints`; runs only when every option
  /// was read without error.
  public var check: Check?
  /// A short example of the node's options in YAML, for the reference.
  public var example: String
  /// Whether a node of this type (with these options) does so little per frame
  /// that it may run on its producer's thread, called directly instead of
  /// through a queue (see `Plan.fusedEdges`). Nil: never.
  public var fusable: (@Sendable (Node) -> Bool)?
  /// Whether the node reads or writes every payload byte itself (generate fills,
  /// directory reads files, checksum hashes, store writes). Two such nodes are
  /// not fused: their passes over the bytes are faster on two cores than one
  /// after the other on one.
  public var touchesPayload: Bool
  /// For sources: the option that makes this node remove its originals once
  /// every guaranteed sink confirmed them (directory `on_done`, file writer
  /// `delete`), if it does so with these options. Validation warns when no
  /// guaranteed path leads from such a node to a sink: nothing would confirm,
  /// so each original would go as soon as it is sent.
  public var cleansUp: (@Sendable (Node) -> String?)?
  /// For sources: whether the node loses nothing by waiting while its output is
  /// full, because its input waits too (synthetic frames; files on a detector's
  /// file writer). Edges fed by such sources only keep short queues (see
  /// `Plan.pacedEdges`).
  public var canWait: Bool

  public init(
    name: String, kind: NodeKind, summary: String, details: String = "", options: [OptionSpec],
    constraints: [OptionConstraint] = [], example: String = "", check: Check? = nil,
    fusable: (@Sendable (Node) -> Bool)? = nil, touchesPayload: Bool = false,
    cleansUp: (@Sendable (Node) -> String?)? = nil, canWait: Bool = false
  ) {
    self.canWait = canWait
    self.fusable = fusable
    self.touchesPayload = touchesPayload
    self.cleansUp = cleansUp
    self.name = name
    self.kind = kind
    self.summary = summary
    self.details = details
    self.options = options
    self.constraints = constraints
    self.check = check
    self.example = example
  }

  public func option(_ name: String) -> OptionSpec? { options.first { $0.name == name } }
}

/// What a node type's custom check sees: the node's checked options and a place
/// to report problems.
public struct NodeCheck {
  public let node: Node
  public var diagnostics: Diagnostics

  /// The place of an option's value, or of the node when it is absent.
  public func location(of option: String) -> SourceLocation {
    node.optionLocations[option] ?? node.location
  }

  public mutating func error(_ option: String, _ message: String, hint: String? = nil) {
    diagnostics.error(location(of: option), message, hint: hint)
  }

  public mutating func warning(_ option: String, _ message: String, hint: String? = nil) {
    diagnostics.warning(location(of: option), message, hint: hint)
  }
}

/// The set of node types a graph may use.
public struct NodeCatalog: Sendable {
  public private(set) var types: [NodeTypeSpec]

  public init(_ types: [NodeTypeSpec]) {
    self.types = types
    precondition(Set(types.map(\.name)).count == types.count, "node type names must be unique")
  }

  public subscript(name: String) -> NodeTypeSpec? { types.first { $0.name == name } }
  public var names: [String] { types.map(\.name) }
}
