/// The outcome of checking a graph: the graph (when its structure could be read,
/// even with errors) and every diagnostic.
public struct ValidationResult: Sendable {
  public var graph: Graph?
  public var diagnostics: Diagnostics
  /// True when there is no error (warnings allowed).
  public var isValid: Bool { graph != nil && !diagnostics.hasErrors }
}

/// Checks graph files completely and offline: every problem is reported in one pass.
///
/// The checks run in two layers. First each node on its own: its type, every option
/// against the type's declaration, its inputs. Then the graph as a whole: inputs
/// that name no node, cycles, reachability, outputs nobody reads, listen
/// addresses and store roots that collide, hosts, and edge QoS that contradicts
/// what the consumer promises.
public struct GraphValidator: Sendable {
  public let catalog: NodeCatalog

  public init(catalog: NodeCatalog) {
    self.catalog = catalog
  }

  /// Checks `text`, the contents of `file`, with `${VAR}` taken from `environment`.
  public func validate(text: String, file: String, environment: [String: String] = [:]) -> ValidationResult {
    var diagnostics = Diagnostics()
    let loader = GraphLoader(environment: environment)
    guard let root = loader.load(text: text, file: file, diagnostics: &diagnostics) else {
      return ValidationResult(graph: nil, diagnostics: diagnostics)
    }
    var pass = Pass(catalog: catalog, file: file)
    pass.diagnostics = diagnostics
    let graph = pass.run(root)
    return ValidationResult(graph: graph, diagnostics: pass.diagnostics)
  }
}

/// One run of the validator over one file.
private struct Pass {
  let catalog: NodeCatalog
  let file: String
  var diagnostics = Diagnostics()
  /// Nodes named as inputs by nodes or edges that failed to load: their output
  /// probably is read, so "not read" warnings about them would only be noise.
  var probablyRead = Set<String>()
  /// Nodes that failed to load (their problems are reported already).
  var failedNodes = 0
  /// Edges whose options had errors: their QoS is not what the user meant.
  var badEdges = Set<SourceLocation>()

  init(catalog: NodeCatalog, file: String) {
    self.catalog = catalog
    self.file = file
  }

  static let namePattern = "letters, digits, '-' and '_'"

  mutating func run(_ root: ConfigValue) -> Graph? {
    guard let entries = root.entries else {
      diagnostics.error(
        root.location, "a graph file is a mapping with 'graph:' and 'nodes:', got \(root.kindDescription)")
      return nil
    }
    var reader = OptionReader()
    let (top, _) = reader.readMapping(
      entries, specs: GraphLanguage.topLevel, extraKeys: ["hosts", "nodes"], subject: "the graph",
      owner: root.location)
    diagnostics.append(contentsOf: reader.diagnostics)
    let stem = file.split(separator: "/").last.map { String($0.split(separator: ".").first ?? $0) } ?? "graph"
    var graph = Graph(
      name: top["graph"]?.string ?? stem, description: top["description"]?.string, file: file, hosts: [],
      nodes: [])
    if let nameEntry = root["graph"], !Self.isName(graph.name) {
      diagnostics.error(
        nameEntry.value.location, "graph name '\(graph.name)' may only contain \(Self.namePattern)")
    }
    if let hosts = root["hosts"] { graph.hosts = readHosts(hosts.value) }
    guard let nodesEntry = root["nodes"] else {
      diagnostics.error(root.location, "the graph is missing required key 'nodes'")
      return graph
    }
    guard let nodeEntries = nodesEntry.value.entries else {
      diagnostics.error(
        nodesEntry.value.location,
        "'nodes' expects a mapping of node name to node, got \(nodesEntry.value.kindDescription)")
      return graph
    }
    if nodeEntries.isEmpty {
      diagnostics.error(nodesEntry.value.location, "the graph has no nodes")
    }
    for entry in nodeEntries {
      if let node = readNode(entry, hosts: graph.hosts) { graph.nodes.append(node) }
    }
    checkStructure(graph, declared: Set(nodeEntries.map(\.key)))
    checkCollisions(graph)
    return graph
  }

  // MARK: - Hosts

  mutating func readHosts(_ value: ConfigValue) -> [Host] {
    guard let entries = value.entries else {
      diagnostics.error(
        value.location,
        "'hosts' expects a mapping of host name to {address: ...}, got \(value.kindDescription)")
      return []
    }
    var hosts: [Host] = []
    for entry in entries {
      if !Self.isName(entry.key) {
        diagnostics.error(entry.keyLocation, "host name '\(entry.key)' may only contain \(Self.namePattern)")
      }
      guard let fields = entry.value.entries else {
        diagnostics.error(
          entry.value.location,
          "host '\(entry.key)' expects a mapping with 'address', got \(entry.value.kindDescription)")
        continue
      }
      var reader = OptionReader()
      let (values, _) = reader.readMapping(
        fields, specs: GraphLanguage.hostOptions, subject: "host '\(entry.key)'", owner: entry.keyLocation)
      diagnostics.append(contentsOf: reader.diagnostics)
      // A host without a valid address is still declared (its error is reported),
      // so nodes naming it get no second, misleading error.
      let address = values["address"]?.string ?? ""
      hosts.append(
        Host(
          name: entry.key, address: address, basePort: values["base_port"]?.integer ?? 5600,
          location: entry.keyLocation))
    }
    return hosts
  }

  // MARK: - One node

  mutating func readNode(_ entry: ConfigEntry, hosts: [Host]) -> Node? {
    let name = entry.key
    if !Self.isName(name) {
      diagnostics.error(entry.keyLocation, "node name '\(name)' may only contain \(Self.namePattern)")
    }
    guard let fields = entry.value.entries else {
      failedNodes += 1
      let optionNames = Set(
        catalog.types.flatMap { $0.options.map(\.name) } + GraphLanguage.commonNodeOptions.map(\.name))
      if optionNames.contains(name) {
        diagnostics.error(
          entry.keyLocation, "'\(name)' is written as a node, but it looks like a node option",
          hint: "indent it under the node it belongs to")
        if name == "input" || name == "inputs" { probablyRead.formUnion(Self.names(in: entry.value)) }
      } else if entry.value.isNull {
        diagnostics.error(
          entry.keyLocation, "node '\(name)' is empty", hint: "its options must be indented below its name")
      } else {
        diagnostics.error(
          entry.value.location,
          "node '\(name)' expects a mapping with 'type:', got \(entry.value.kindDescription)")
      }
      return nil
    }
    // Whatever happens below, the nodes this one names as inputs count as read.
    let named = fields.filter { $0.key == "input" || $0.key == "inputs" }.flatMap { Self.names(in: $0.value) }
    guard let typeEntry = fields.first(where: { $0.key == "type" }) else {
      failedNodes += 1
      probablyRead.formUnion(named)
      diagnostics.error(
        entry.keyLocation, "node '\(name)' has no 'type'",
        hint: "one of: " + catalog.names.joined(separator: ", "))
      return nil
    }
    guard let typeName = typeEntry.value.scalar else {
      failedNodes += 1
      probablyRead.formUnion(named)
      diagnostics.error(
        typeEntry.value.location,
        "'type' of node '\(name)' expects a node type name, got \(typeEntry.value.kindDescription)")
      return nil
    }
    guard let spec = catalog[typeName] else {
      failedNodes += 1
      probablyRead.formUnion(named)
      diagnostics.error(
        typeEntry.value.location, "unknown node type '\(typeName)' for node '\(name)'",
        hint: Suggest.hint(for: typeName, in: catalog.names) ?? "known types: "
          + catalog.names.joined(separator: ", "))
      return nil
    }
    let subject = "\(typeName) node '\(name)'"
    var reader = OptionReader()
    let common = Set(GraphLanguage.commonNodeOptions.map(\.name))
    let hintKeys = GraphLanguage.commonNodeOptions.map(\.name).filter {
      spec.kind.takesInput || ($0 != "input" && $0 != "inputs")
    }
    let (options, locations) = reader.readMapping(
      fields, specs: spec.options, extraKeys: common, hintKeys: hintKeys, subject: subject,
      owner: entry.keyLocation)
    let optionErrors = reader.diagnostics.hasErrors
    diagnostics.append(contentsOf: reader.diagnostics)

    var node = Node(
      name: name, type: typeName, kind: spec.kind, host: nil, description: nil, options: options,
      optionLocations: locations, inputs: [], location: entry.keyLocation)
    for field in fields {
      switch field.key {
      case "host": node.host = readHost(field, hosts: hosts, node: name)
      case "description":
        if let text = field.value.scalar {
          node.description = text
        } else {
          diagnostics.error(
            field.value.location, "'description' expects a string, got \(field.value.kindDescription)")
        }
      default: break
      }
    }
    node.inputs = readInputs(fields, node: name, kind: spec.kind, subject: subject, at: entry.keyLocation)
    if node.inputs.count < named.count { probablyRead.formUnion(named) }
    if !optionErrors {
      checkConstraints(spec, node: node, fields: fields, subject: subject)
      if let check = spec.check {
        var context = NodeCheck(node: node, diagnostics: Diagnostics())
        check(&context)
        diagnostics.append(contentsOf: context.diagnostics)
      }
    }
    return node
  }

  mutating func readHost(_ field: ConfigEntry, hosts: [Host], node: String) -> String? {
    guard let host = field.value.scalar else {
      diagnostics.error(
        field.value.location, "'host' expects a host name, got \(field.value.kindDescription)")
      return nil
    }
    if hosts.isEmpty {
      diagnostics.error(
        field.value.location, "node '\(node)' names host '\(host)' but the graph declares no 'hosts:'")
    } else if !hosts.contains(where: { $0.name == host }) {
      diagnostics.error(
        field.value.location, "unknown host '\(host)' for node '\(node)'",
        hint: Suggest.hint(for: host, in: hosts.map(\.name)) ?? "declared hosts: "
          + hosts.map(\.name).joined(separator: ", "))
    }
    return host
  }

  mutating func checkConstraints(_ spec: NodeTypeSpec, node: Node, fields: [ConfigEntry], subject: String) {
    let written = Set(fields.map(\.key))
    for constraint in spec.constraints {
      switch constraint {
      case .exactlyOne(let names):
        let given = names.filter(written.contains)
        let list = names.map { "'\($0)'" }.joined(separator: " or ")
        if given.isEmpty {
          diagnostics.error(node.location, "\(subject) needs \(list)")
        } else if given.count > 1 {
          diagnostics.error(
            node.optionLocations[given[1]] ?? node.location, "\(subject) takes only one of \(list)")
        }
      case .atMostOne(let names):
        let given = names.filter(written.contains)
        if given.count > 1 {
          diagnostics.error(
            node.optionLocations[given[1]] ?? node.location,
            "\(subject) takes only one of " + names.map { "'\($0)'" }.joined(separator: " or "))
        }
      case .requires(let option, let value, let required):
        if node.options[option]?.string == value, !written.contains(required) {
          diagnostics.error(
            node.optionLocations[option] ?? node.location,
            "\(subject) with \(option): \(value) needs option '\(required)'")
        }
      case .onlyWhen(let option, let other, let values):
        if written.contains(option), let actual = node.options[other]?.string, !values.contains(actual) {
          diagnostics.error(
            node.optionLocations[option] ?? node.location,
            "option '\(option)' of \(subject) only applies when \(other) is "
              + values.map { "'\($0)'" }.joined(separator: " or ") + ", not '\(actual)'")
        }
      }
    }
  }

  // MARK: - Inputs and edges

  mutating func readInputs(
    _ fields: [ConfigEntry], node: String, kind: NodeKind, subject: String, at location: SourceLocation
  ) -> [Edge] {
    let input = fields.first { $0.key == "input" }
    let inputs = fields.first { $0.key == "inputs" }
    if input != nil, let inputs {
      diagnostics.error(
        inputs.keyLocation, "\(subject) has both 'input' and 'inputs'; use one", hint: "'inputs' takes a list"
      )
      return []
    }
    guard let written = input ?? inputs else {
      if kind.takesInput {
        diagnostics.error(location, "\(subject) has no input", hint: "add 'input: NODE'")
      }
      return []
    }
    if !kind.takesInput {
      diagnostics.error(written.keyLocation, "\(subject) is a source and takes no input")
      return []
    }
    let items: [ConfigValue]
    if written.key == "inputs" {
      guard let list = written.value.items else {
        diagnostics.error(
          written.value.location, "'inputs' expects a list of inputs, got \(written.value.kindDescription)",
          hint: "for one input write 'input:'")
        return []
      }
      if list.isEmpty { diagnostics.error(written.value.location, "'inputs' is empty") }
      items = list
    } else if written.value.items != nil {
      diagnostics.error(
        written.value.location, "'input' takes one input, got a list",
        hint: "for several inputs write 'inputs:'")
      return []
    } else {
      items = [written.value]
    }
    return items.compactMap { readEdge($0, to: node) }
  }

  mutating func readEdge(_ value: ConfigValue, to node: String) -> Edge? {
    switch value.kind {
    case .scalar(let from, _):
      if from.isEmpty {
        diagnostics.error(value.location, "the input of node '\(node)' names no node")
        return nil
      }
      return Edge(from: from, to: node, location: value.location)
    case .mapping(let entries):
      var reader = OptionReader()
      let (options, locations) = reader.readMapping(
        entries, specs: GraphLanguage.edgeOptions, subject: "the input of node '\(node)'",
        owner: value.location)
      diagnostics.append(contentsOf: reader.diagnostics)
      guard let from = options["from"]?.string else { return nil }
      let fromLocation = entries.first { $0.key == "from" }?.value.location ?? value.location
      if reader.diagnostics.hasErrors { badEdges.insert(fromLocation) }
      let delivery = options["delivery"]?.string.flatMap(Delivery.init(rawValue:)) ?? .guaranteed
      let buffer = options["buffer"]?.record
      let qos = EdgeQoS(
        delivery: delivery, bufferFrames: buffer?["frames"]?.integer, bufferBytes: buffer?["bytes"]?.bytes,
        spill: options["spill"]?.string, sampleEvery: options["sample"]?.record?["every"]?.integer ?? 1,
        maxRate: options["rate"]?.record?["max"]?.perSecond)
      if qos.spill != nil, delivery != .guaranteed {
        diagnostics.error(
          locations["spill"] ?? value.location,
          "'spill' only applies to guaranteed edges; this edge is \(delivery.rawValue)",
          hint: "a \(delivery.rawValue) edge drops frames instead of spilling them")
      }
      return Edge(from: from, to: node, qos: qos, location: fromLocation)
    default:
      diagnostics.error(
        value.location, "an input is a node name or a mapping with 'from:', got \(value.kindDescription)")
      return nil
    }
  }

  // MARK: - The graph as a whole

  mutating func checkStructure(_ graph: Graph, declared: Set<String>) {
    let byName = Dictionary(graph.nodes.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    var broken = Set<String>()  // nodes with an input problem already reported
    for node in graph.nodes {
      if node.kind.takesInput, node.inputs.isEmpty { broken.insert(node.name) }
      var seen = Set<String>()
      for edge in node.inputs {
        if edge.from == node.name {
          diagnostics.error(edge.location, "node '\(node.name)' reads its own output")
          broken.insert(node.name)
        } else if let producer = byName[edge.from] {
          if !producer.kind.hasOutput {
            diagnostics.error(
              edge.location,
              "node '\(node.name)' reads from '\(edge.from)', a \(producer.type) node, which has no output",
              hint: "forwards end the graph; read from the node that feeds '\(edge.from)'")
            broken.insert(node.name)
          }
        } else if !declared.contains(edge.from) {
          let meant = Suggest.nearest(to: edge.from, in: graph.nodes.map(\.name))
          if let meant { probablyRead.insert(meant) }
          diagnostics.error(
            edge.location, "node '\(node.name)' reads from unknown node '\(edge.from)'",
            hint: meant.map { "did you mean '\($0)'?" })
          broken.insert(node.name)
        } else {
          broken.insert(node.name)  // the producer itself failed to load
        }
        if !seen.insert(edge.from).inserted {
          diagnostics.error(edge.location, "node '\(node.name)' reads from '\(edge.from)' twice")
        }
      }
    }
    let inCycle = reportCycles(graph, byName: byName)
    // Reachability from sources, following edges forwards. Nodes downstream of an
    // input problem already reported are "explained" and not reported again.
    var reached = Set(graph.nodes.filter { $0.kind == .source }.map(\.name))
    var explained = broken
    var changed = true
    while changed {
      changed = false
      for node in graph.nodes {
        if !reached.contains(node.name), node.inputs.contains(where: { reached.contains($0.from) }) {
          reached.insert(node.name)
          changed = true
        }
        if !explained.contains(node.name), node.inputs.contains(where: { explained.contains($0.from) }) {
          explained.insert(node.name)
          changed = true
        }
      }
    }
    for node in graph.nodes
    where !reached.contains(node.name) && !inCycle.contains(node.name) && !explained.contains(node.name) {
      let feeding = node.inputs.map(\.from).filter(inCycle.contains)
      let cause = feeding.isEmpty ? "" : "; it reads only from the cycle through '\(feeding[0])'"
      diagnostics.error(node.location, "node '\(node.name)' is unreachable: no source feeds it\(cause)")
    }
    if failedNodes == 0, !graph.nodes.isEmpty, !graph.nodes.contains(where: { $0.kind == .source }) {
      diagnostics.error(graph.nodes[0].location, "the graph has no source node, so no frame ever enters it")
    }
    // Outputs that nobody reads (not counting a node a misspelt input meant).
    let read = Set(graph.edges.map(\.from)).union(probablyRead)
    for node in graph.nodes where node.kind.hasOutput && !node.kind.isSink && !read.contains(node.name) {
      diagnostics.warning(
        node.location,
        "the output of \(node.type) node '\(node.name)' is not read by any node; its frames go nowhere")
    }
    checkEdgeQoS(graph, byName: byName)
    checkCleanup(graph)
  }

  /// Reports each cycle once, as `a -> b -> c -> a`, at its first node in file order.
  mutating func reportCycles(_ graph: Graph, byName: [String: Node]) -> Set<String> {
    enum Mark { case visiting, done }
    var marks: [String: Mark] = [:]
    var stack: [String] = []
    var members = Set<String>()
    var cycles: [[String]] = []
    func visit(_ name: String) {
      marks[name] = .visiting
      stack.append(name)
      // Edges out of stores and forwards are reported already; they make no cycle.
      for edge in byName[name]?.inputs ?? []
      where edge.from != name && byName[edge.from]?.kind.hasOutput == true {
        switch marks[edge.from] {
        case nil: visit(edge.from)
        case .visiting?:
          let start = stack.lastIndex(of: edge.from)!
          cycles.append(Array(stack[start...]))
        case .done?: break
        }
      }
      stack.removeLast()
      marks[name] = .done
    }
    for node in graph.nodes where marks[node.name] == nil { visit(node.name) }
    let order = Dictionary(uniqueKeysWithValues: graph.nodes.enumerated().map { ($1.name, $0) })
    for cycle in cycles {
      members.formUnion(cycle)
      // Inputs point backwards; show the cycle in the direction frames flow.
      var flow = Array(cycle.reversed())
      let first = flow.indices.min { order[flow[$0], default: 0] < order[flow[$1], default: 0] }!
      flow = Array(flow[first...] + flow[..<first])
      let node = byName[flow[0]]!
      diagnostics.error(node.location, "cycle: " + (flow + [flow[0]]).joined(separator: " -> "))
    }
    return members
  }

  mutating func checkEdgeQoS(_ graph: Graph, byName: [String: Node]) {
    for node in graph.nodes {
      let inputs = node.inputs.filter { !badEdges.contains($0.location) }
      for edge in inputs where edge.qos.delivery != .guaranteed {
        if node.kind == .store {
          diagnostics.warning(
            edge.location,
            "store node '\(node.name)' reads a \(edge.qos.delivery.rawValue) edge, so it will not store every frame",
            hint: "use 'delivery: guaranteed' for storage")
        }
      }
      guard node.kind == .forward else { continue }
      for edge in inputs where edge.qos.delivery == .guaranteed {
        if node.options["pattern"]?.string == "pub" {
          diagnostics.warning(
            edge.location,
            "forward node '\(node.name)' publishes ('pattern: pub'), which drops frames for slow subscribers; its guaranteed input cannot be kept end to end",
            hint: "use 'pattern: push' for guaranteed delivery, or make the edge 'latest'")
        }
        if node.options["format"]?.string == "simplon-monitor" {
          diagnostics.warning(
            edge.location,
            "a guaranteed edge into simplon-monitor forward '\(node.name)' lets a slow monitor client slow down '\(edge.from)'",
            hint: "use 'delivery: latest' for live monitoring")
        }
      }
    }
  }

  /// A source that removes originals once its guaranteed sinks confirmed them
  /// needs at least one guaranteed path to a sink; otherwise nothing confirms
  /// and every original goes as soon as it is sent.
  mutating func checkCleanup(_ graph: Graph) {
    let outgoing = Dictionary(grouping: graph.edges.filter { $0.qos.delivery == .guaranteed }, by: \.from)
    let byName = Dictionary(graph.nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    for node in graph.nodes {
      guard let option = catalog[node.type]?.cleansUp?(node) else { continue }
      var seen: Set<String> = [node.name]
      var next = [node.name]
      var reachesSink = false
      while let name = next.popLast(), !reachesSink {
        for edge in outgoing[name] ?? [] where seen.insert(edge.to).inserted {
          if byName[edge.to]?.kind.isSink == true { reachesSink = true }
          next.append(edge.to)
        }
      }
      if !reachesSink {
        diagnostics.warning(
          node.optionLocations[option] ?? node.location,
          "'\(option)' removes each original of \(node.type) node '\(node.name)' once every guaranteed sink confirmed it, but no guaranteed edge leads to a store or forward, so each would be removed as soon as it is sent",
          hint: "read it into a store (or forward) over 'delivery: guaranteed' edges")
      }
    }
  }

  // MARK: - Collisions between nodes

  /// Listen endpoints and store roots must be unique per host.
  mutating func checkCollisions(_ graph: Graph) {
    let defaultHost = graph.hosts.first?.name ?? ""
    var listeners: [(host: String, endpoint: Endpoint, node: String, location: SourceLocation)] = []
    var roots: [(host: String, path: [Substring], text: String, node: String, location: SourceLocation)] = []
    for node in graph.nodes {
      guard let spec = catalog[node.type] else { continue }
      let host = node.host ?? defaultHost
      for option in spec.options {
        guard let value = node.options[option.name]?.string, let location = node.optionLocations[option.name]
        else { continue }
        switch option.type {
        case .endpoint(let schemes, .listen):
          guard case .success(let endpoint) = Endpoint.parse(value, schemes: schemes, role: .listen) else {
            continue
          }
          if let clash = listeners.first(where: { $0.host == host && $0.endpoint.conflicts(with: endpoint) })
          {
            diagnostics.error(
              location,
              "node '\(node.name)' listens on \(value), which node '\(clash.node)' already listens on (\(clash.location))"
            )
          }
          listeners.append((host, endpoint, node.name, location))
        case .path(.exclusiveRoot):
          let components = Self.normalize(value)
          if let clash = roots.first(where: {
            $0.host == host && (components.starts(with: $0.path) || $0.path.starts(with: components))
          }) {
            let relation =
              components == clash.path
              ? "is the same as" : (components.count > clash.path.count ? "is inside" : "contains")
            diagnostics.error(
              location,
              "root \(value) of node '\(node.name)' \(relation) root \(clash.text) of node '\(clash.node)' (\(clash.location)); two stores would write into the same tree"
            )
          }
          roots.append((host, components, value, node.name, location))
        default:
          break
        }
      }
    }
  }

  /// Path components with `.` removed and `..` applied, for overlap checks.
  static func normalize(_ path: String) -> [Substring] {
    var output: [Substring] = path.hasPrefix("/") ? ["/"] : []
    for component in path.split(separator: "/") where component != "." {
      if component == "..", let last = output.last, last != "/", last != ".." {
        output.removeLast()
      } else {
        output.append(component)
      }
    }
    return output
  }

  /// The node names an `input`/`inputs` value mentions, however malformed it is.
  static func names(in value: ConfigValue) -> [String] {
    switch value.kind {
    case .scalar(let name, _): return [name]
    case .sequence(let items): return items.flatMap(names(in:))
    case .mapping: return value["from"].map { names(in: $0.value) } ?? []
    default: return []
    }
  }

  static func isName(_ name: String) -> Bool {
    !name.isEmpty
      && name.unicodeScalars.allSatisfy {
        ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "-"
          || $0 == "_"
      }
  }
}
