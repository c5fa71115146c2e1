/// A checked option value, with units already applied.
public indirect enum OptionValue: Sendable, Hashable, CustomStringConvertible {
  case string(String)
  case integer(Int)
  case number(Double)
  case boolean(Bool)
  /// A size in bytes.
  case bytes(UInt64)
  /// A duration in seconds.
  case seconds(Double)
  /// A rate in events per second.
  case perSecond(Double)
  case list([OptionValue])
  case record([String: OptionValue])

  public var string: String? {
    if case .string(let value) = self { return value }
    return nil
  }
  public var integer: Int? {
    if case .integer(let value) = self { return value }
    return nil
  }
  public var boolean: Bool? {
    if case .boolean(let value) = self { return value }
    return nil
  }
  public var bytes: UInt64? {
    if case .bytes(let value) = self { return value }
    return nil
  }
  public var seconds: Double? {
    if case .seconds(let value) = self { return value }
    return nil
  }
  public var perSecond: Double? {
    if case .perSecond(let value) = self { return value }
    return nil
  }
  public var list: [OptionValue]? {
    if case .list(let value) = self { return value }
    return nil
  }
  public var record: [String: OptionValue]? {
    if case .record(let value) = self { return value }
    return nil
  }

  /// The value as a user would write it in YAML flow style.
  public var description: String {
    switch self {
    case .string(let s): return s
    case .integer(let i): return String(i)
    case .number(let d): return Units.trim(d)
    case .boolean(let b): return String(b)
    case .bytes(let b): return Units.formatSize(b)
    case .seconds(let s): return Units.formatDuration(s)
    case .perSecond(let r): return Units.formatRate(r)
    case .list(let items): return "[" + items.map(\.description).joined(separator: ", ") + "]"
    case .record(let fields):
      return "{" + fields.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")
        + "}"
    }
  }
}

/// How an edge behaves when its buffer is full (see docs/qos.md).
public enum Delivery: String, Sendable, CaseIterable, Hashable {
  /// The producer waits (or spills to disk); nothing is dropped.
  case guaranteed
  /// The new frame is dropped on this edge and counted.
  case bestEffort = "best-effort"
  /// The oldest queued frame is dropped; the newest are kept.
  case latest
}

/// The quality of service of one edge.
public struct EdgeQoS: Sendable, Hashable {
  public var delivery: Delivery
  /// At most this many data frames are queued on the edge.
  public var bufferFrames: Int
  /// At most this many payload bytes are queued on the edge.
  public var bufferBytes: UInt64
  /// A directory where a full guaranteed edge spills frames instead of blocking.
  public var spill: String?
  /// Keep only every Nth data frame (1 keeps all).
  public var sampleEvery: Int
  /// At most this many data frames per second pass the edge.
  public var maxRate: Double?

  /// The buffer an edge gets when it names none.
  public static func defaultBuffer(for delivery: Delivery) -> (frames: Int, bytes: UInt64) {
    switch delivery {
    case .guaranteed: return (1024, 1 << 30)
    case .bestEffort: return (64, 256 << 20)
    case .latest: return (4, 256 << 20)
    }
  }

  public init(
    delivery: Delivery = .guaranteed, bufferFrames: Int? = nil, bufferBytes: UInt64? = nil,
    spill: String? = nil, sampleEvery: Int = 1, maxRate: Double? = nil
  ) {
    let defaults = Self.defaultBuffer(for: delivery)
    self.delivery = delivery
    self.bufferFrames = bufferFrames ?? defaults.frames
    self.bufferBytes = bufferBytes ?? defaults.bytes
    self.spill = spill
    self.sampleEvery = sampleEvery
    self.maxRate = maxRate
  }

  /// `guaranteed 1024 frames/1GiB`, for drawings and plans.
  public var summary: String {
    var text = "\(delivery.rawValue) \(bufferFrames) frames/\(Units.formatSize(bufferBytes))"
    if let spill { text += " spill \(spill)" }
    if sampleEvery > 1 { text += " every \(sampleEvery)" }
    if let maxRate { text += " max \(Units.formatRate(maxRate))" }
    return text
  }
}

/// A connection from one node's output to another node's input.
public struct Edge: Sendable, Hashable {
  public var from: String
  public var to: String
  public var qos: EdgeQoS
  /// Where the edge was written (the consuming node's `input:` entry).
  public var location: SourceLocation

  public init(from: String, to: String, qos: EdgeQoS = EdgeQoS(), location: SourceLocation) {
    self.from = from
    self.to = to
    self.qos = qos
    self.location = location
  }
}

/// A host of a multi-host graph.
public struct Host: Sendable, Hashable {
  public var name: String
  /// The address other hosts reach this one at.
  public var address: String
  /// The first TCP port Hidra may bind on this host for cross-host edges.
  public var basePort: Int
  public var location: SourceLocation
}

/// A node of a checked graph.
public struct Node: Sendable {
  public var name: String
  public var type: String
  public var kind: NodeKind
  public var host: String?
  public var description: String?
  /// Every declared option, with defaults filled in.
  public var options: [String: OptionValue]
  /// Where each option that was written appears.
  public var optionLocations: [String: SourceLocation]
  public var inputs: [Edge]
  /// Where the node's name was written.
  public var location: SourceLocation

  public subscript(option: String) -> OptionValue? { options[option] }
}

/// A checked graph: nodes in the order they were written, and their edges.
public struct Graph: Sendable {
  public var name: String
  public var description: String?
  public var file: String
  public var hosts: [Host]
  public var nodes: [Node]

  public var edges: [Edge] { nodes.flatMap(\.inputs) }

  public func node(_ name: String) -> Node? { nodes.first { $0.name == name } }

  /// The edges leaving `name`, in the order their consumers were written.
  public func consumers(of name: String) -> [Edge] { edges.filter { $0.from == name } }
}
