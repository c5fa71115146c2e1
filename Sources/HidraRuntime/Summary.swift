import HidraGraph

/// Human-readable progress and summaries of a run, from metrics snapshots.
public enum Summary {
  /// One line for the interval between two snapshots: each node's output rate,
  /// drops on the interval, and what is queued.
  public static func line(_ previous: MetricsSnapshot, _ current: MetricsSnapshot, elapsed: Double) -> String
  {
    let seconds = max(Double(current.taken &- previous.taken) / 1e9, 1e-9)
    var parts: [String] = []
    for (node, before) in zip(current.nodes, previous.nodes) {
      let frames = Double(node.framesOut - before.framesOut) / seconds
      let bytes = Double(node.bytesOut - before.bytesOut) / seconds
      let count =
        node.framesOut > 0 || node.framesIn == 0 ? frames : Double(node.framesIn - before.framesIn) / seconds
      var text = "\(node.node) \(rate(count)) f/s"
      if bytes > 0 { text += " \(bytesText(bytes))/s" }
      if node.errors > 0 { text += " \(node.errors) errors" }
      parts.append(text)
    }
    var line = "[\(pad(String(format1(elapsed)) + "s", 7))] " + parts.joined(separator: " | ")
    let drops = zip(current.edges, previous.edges).compactMap { edge, before -> String? in
      let count = edge.totalDropped - before.totalDropped
      return count > 0 ? "\(edge.from)->\(edge.to) \(count)" : nil
    }
    if !drops.isEmpty { line += " | dropped: " + drops.joined(separator: ", ") }
    let queued = current.edges.reduce(0) { $0 + $1.queuedFrames }
    let queuedBytes = current.edges.reduce(0) { $0 + $1.queuedBytes }
    line += " | queued \(queued) (\(bytesText(Double(queuedBytes))))"
    return line
  }

  /// A table for a terminal, redrawn in place every interval.
  public static func table(_ previous: MetricsSnapshot, _ current: MetricsSnapshot, elapsed: Double)
    -> [String]
  {
    let seconds = max(Double(current.taken &- previous.taken) / 1e9, 1e-9)
    var rows = [["node", "type", "in f/s", "out f/s", "out/s", "frames out", "errors"]]
    for (node, before) in zip(current.nodes, previous.nodes) {
      rows.append([
        node.node, node.type, rate(Double(node.framesIn - before.framesIn) / seconds),
        rate(Double(node.framesOut - before.framesOut) / seconds),
        bytesText(Double(node.bytesOut - before.bytesOut) / seconds), String(node.framesOut),
        String(node.errors),
      ])
    }
    var edgeRows = [["edge", "delivered", "dropped", "queued", "queued bytes"]]
    for edge in current.edges {
      edgeRows.append([
        "\(edge.from) -> \(edge.to)", String(edge.deliveredData), dropText(edge), String(edge.queuedFrames),
        bytesText(Double(edge.queuedBytes)),
      ])
    }
    return ["hidra: running \(format1(elapsed))s (Ctrl-C drains, twice exits at once)"] + format(rows) + [""]
      + format(edgeRows)
  }

  /// The summary printed when the run ends: totals per node and per edge, and
  /// what was left in each edge if the run was aborted.
  public static func final(_ snapshot: MetricsSnapshot, graph: Graph, elapsed: Double) -> String {
    var rows = [["node", "type", "frames in", "frames out", "bytes out", "errors", "left"]]
    for node in snapshot.nodes {
      rows.append([
        node.node, node.type, String(node.framesIn), String(node.framesOut), bytesText(Double(node.bytesOut)),
        String(node.errors), node.abandoned > 0 ? "\(node.abandoned) frames" : "0",
      ])
    }
    // Data frames only, so that offered = delivered + dropped + left.
    var edgeRows = [["edge", "delivery", "offered", "delivered", "dropped", "left", "waited"]]
    let deliveries = Dictionary(
      graph.edges.map { ("\($0.from)->\($0.to)", $0.qos.delivery.rawValue) }, uniquingKeysWith: { a, _ in a })
    for edge in snapshot.edges {
      edgeRows.append([
        "\(edge.from) -> \(edge.to)", deliveries["\(edge.from)->\(edge.to)"] ?? "", String(edge.offered),
        String(edge.deliveredData), dropText(edge),
        edge.queuedFrames > 0 ? "\(edge.queuedFrames) frames" : "0",
        "\(format1(Double(edge.blockedNanos) / 1e9))s",
      ])
    }
    return (["hidra: finished after \(format1(elapsed))s"] + format(rows) + [""] + format(edgeRows))
      .joined(separator: "\n")
  }

  static func dropText(_ edge: EdgeSnapshot) -> String {
    let parts = DropReason.allCases.compactMap { reason -> String? in
      let count = edge.dropped[reason] ?? 0
      return count > 0 ? "\(count) \(reason.rawValue)" : nil
    }
    return parts.isEmpty ? "0" : parts.joined(separator: ", ")
  }

  static func format(_ rows: [[String]]) -> [String] {
    let widths = (0..<(rows.first?.count ?? 0)).map { column in rows.map { $0[column].count }.max() ?? 0 }
    return rows.map { row in
      "  " + zip(row, widths).map { pad($0, $1) }.joined(separator: "  ").trimmingTrailingSpaces
    }
  }

  static func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
  }

  static func rate(_ value: Double) -> String {
    value >= 100 ? String(Int(value.rounded())) : format1(value)
  }

  static func format1(_ value: Double) -> String {
    let tenths = Int((value * 10).rounded())
    return "\(tenths / 10).\(abs(tenths % 10))"
  }

  /// `12.6 MB`, decimal units as rates are usually read.
  public static func bytesText(_ bytes: Double) -> String {
    for (unit, factor) in [("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)] where bytes >= factor {
      return "\(format1(bytes / factor)) \(unit)"
    }
    return "\(Int(bytes)) B"
  }
}

extension String {
  var trimmingTrailingSpaces: String {
    var s = Substring(self)
    while s.last == " " { s.removeLast() }
    return String(s)
  }
}
