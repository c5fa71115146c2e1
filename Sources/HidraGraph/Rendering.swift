/// Text forms of diagnostics and graphs: compiler-style lines, JSON for editors and
/// CI, and Graphviz/Mermaid drawings.
public enum Rendering {
  /// One JSON array of `{file, line, column, severity, message, hint}` objects.
  public static func json(_ diagnostics: [Diagnostic]) -> String {
    let objects = diagnostics.map { d in
      var fields = [
        "\"file\": \(quote(d.location.file))", "\"line\": \(d.location.line)",
        "\"column\": \(d.location.column)",
        "\"severity\": \(quote(d.severity.rawValue))", "\"message\": \(quote(d.message))",
      ]
      if let hint = d.hint { fields.append("\"hint\": \(quote(hint))") }
      return "  {" + fields.joined(separator: ", ") + "}"
    }
    return objects.isEmpty ? "[]" : "[\n" + objects.joined(separator: ",\n") + "\n]"
  }

  /// A JSON string literal.
  public static func quote(_ text: String) -> String {
    var output = "\""
    for scalar in text.unicodeScalars {
      switch scalar {
      case "\"": output += "\\\""
      case "\\": output += "\\\\"
      case "\n": output += "\\n"
      case "\r": output += "\\r"
      case "\t": output += "\\t"
      case _ where scalar.value < 0x20:
        output +=
          "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
          + String(scalar.value, radix: 16)
      default: output.unicodeScalars.append(scalar)
      }
    }
    return output + "\""
  }

  /// A Graphviz drawing: nodes labelled with name and type, edges with QoS.
  public static func dot(_ graph: Graph) -> String {
    var lines = ["digraph \(dotID(graph.name)) {", "  rankdir=LR;", "  node [shape=box, style=rounded];"]
    let hosts = Dictionary(grouping: graph.nodes) { $0.host ?? "" }
    for (index, host) in hosts.keys.sorted().enumerated() {
      let indent = host.isEmpty ? "  " : "    "
      if !host.isEmpty { lines += ["  subgraph cluster_\(index) {", "    label=\(dotID("host \(host)"));"] }
      for node in hosts[host]! {
        let shape = node.kind == .source ? ", shape=cds" : (node.kind.isSink ? ", shape=folder" : "")
        lines.append("\(indent)\(dotID(node.name)) [label=\(dotID("\(node.name)\n\(node.type)"))\(shape)];")
      }
      if !host.isEmpty { lines.append("  }") }
    }
    for edge in graph.edges {
      let style = edge.qos.delivery == .guaranteed ? "" : ", style=dashed"
      lines.append(
        "  \(dotID(edge.from)) -> \(dotID(edge.to)) [label=\(dotID(edgeLabel(edge.qos)))\(style)];")
    }
    lines.append("}")
    return lines.joined(separator: "\n") + "\n"
  }

  /// A Mermaid flowchart, for Markdown pages.
  public static func mermaid(_ graph: Graph) -> String {
    var lines = ["flowchart LR"]
    for node in graph.nodes {
      let label = mermaidText("\(node.name)<br/>\(node.type)")
      let shape =
        node.kind == .source ? "([\(label)])" : (node.kind.isSink ? "[(\(label))]" : "[\(label)]")
      lines.append("  \(mermaidID(node.name))\(shape)")
    }
    for edge in graph.edges {
      let arrow = edge.qos.delivery == .guaranteed ? "-->" : "-.->"
      lines.append(
        "  \(mermaidID(edge.from)) \(arrow)|\(mermaidText(edgeLabel(edge.qos)))| \(mermaidID(edge.to))")
    }
    return lines.joined(separator: "\n") + "\n"
  }

  /// `guaranteed, 1024 frames / 1GiB`, plus spill and thinning when set.
  public static func edgeLabel(_ qos: EdgeQoS) -> String {
    var parts = [
      "\(qos.delivery.rawValue), \(qos.bufferFrames) frames / \(Units.formatSize(qos.bufferBytes))"
    ]
    if let spill = qos.spill { parts.append("spill \(spill)") }
    if qos.sampleEvery > 1 { parts.append("every \(qos.sampleEvery)") }
    if let rate = qos.maxRate { parts.append("max \(Units.formatRate(rate))") }
    return parts.joined(separator: "\n")
  }

  private static func dotID(_ text: String) -> String { quote(text) }

  private static func mermaidID(_ name: String) -> String {
    "n_"
      + String(
        name.unicodeScalars.map {
          Character($0.properties.isAlphabetic || ("0"..."9").contains($0) ? $0 : "_")
        })
  }

  private static func mermaidText(_ text: String) -> String {
    "\"" + text.replacing("\"", with: "#quot;").replacing("\n", with: "<br/>") + "\""
  }
}
