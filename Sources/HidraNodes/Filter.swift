import HidraGraph
import HidraRuntime

/// `filter`: passes on the data frames that match every condition given.
public enum FilterNode {
  public static let spec = NodeTypeSpec(
    name: "filter", kind: .filter,
    summary: "passes on the data frames that match all of its conditions",
    details: """
      Every condition given must hold for a data frame to pass (`invert: true` passes the others). \
      Control frames (series start and end) always pass.
      """,
    options: [
      OptionSpec(
        "on", .choice(["name", "path"]), default: "path",
        doc: "What `glob` and `regex` match: the file name alone or the relative path."),
      OptionSpec("glob", .list(.glob), doc: "Pass frames matching one of these globs."),
      OptionSpec(
        "regex", .regex, doc: "Pass frames whose name or path contains a match of this regular expression."),
      OptionSpec("series", .list(.integer(min: 0)), doc: "Pass frames of these series only."),
      OptionSpec(
        "frames",
        .record([
          OptionSpec("from", .integer(min: 0), doc: "First frame number passed."),
          OptionSpec("to", .integer(min: 0), doc: "Last frame number passed."),
        ]), doc: "Pass frames whose number is in this range (inclusive)."),
      OptionSpec(
        "size",
        .record([
          OptionSpec("min", .size(), doc: "Smallest payload passed."),
          OptionSpec("max", .size(), doc: "Largest payload passed."),
        ]), doc: "Pass frames whose payload size is in this range."),
      OptionSpec("attributes", .dictionary(.string), doc: "Pass frames whose attributes have these values."),
      OptionSpec(
        "every", .integer(min: 1), doc: "Pass every Nth frame of those that match the other conditions."),
      OptionSpec("invert", .boolean, default: "false", doc: "Pass the frames that do not match instead."),
    ],
    example: """
      only-cbf:
        type: filter
        input: pilatus
        glob: ["*.cbf"]
        size: {min: 1KiB}
      """,
    check: { check in
      let conditions = ["glob", "regex", "series", "frames", "size", "attributes", "every"]
      if !conditions.contains(where: { check.node.optionLocations[$0] != nil }) {
        check.diagnostics.error(
          check.node.location, "filter node '\(check.node.name)' has no condition, so it passes every frame",
          hint: "add one of: " + conditions.joined(separator: ", "))
      }
      if let range = check.node["frames"]?.record, let from = range["from"]?.integer,
        let to = range["to"]?.integer,
        from > to
      {
        check.error("frames", "'frames' range is empty: from \(from) is after to \(to)")
      }
      if let size = check.node["size"]?.record, let low = size["min"]?.bytes, let high = size["max"]?.bytes,
        low > high
      {
        check.error(
          "size", "'size' range is empty: min \(Units.formatSize(low)) is above max \(Units.formatSize(high))"
        )
      }
    },
    // Matching a name or a number is cheap next to moving the frame to another thread.
    fusable: { _ in true })
}

extension FilterNode {
  /// The running filter: control frames always pass; data frames pass when every
  /// condition holds (or none does, with `invert`).
  struct Body: FrameTransform {
    let onName: Bool
    let globs: [Glob]
    let regex: Regex<AnyRegexOutput>?
    let series: Set<Int>?
    let frameRange: ClosedRange<Int>
    let sizeRange: ClosedRange<Int>
    let attributes: [String: String]
    let every: Int
    let invert: Bool
    var matched = 0

    init(node: Node) throws {
      onName = node["on"]?.string == "name"
      globs = try (node["glob"]?.list ?? []).compactMap(\.string).map { try Glob.parse($0).get() }
      regex = try node["regex"]?.string.map { try Regex($0) }
      series = node["series"]?.list.map { Set($0.compactMap(\.integer)) }
      let frames = node["frames"]?.record
      frameRange = (frames?["from"]?.integer ?? 0)...(frames?["to"]?.integer ?? Int.max)
      let size = node["size"]?.record
      sizeRange =
        Int(size?["min"]?.bytes ?? 0)...Int(min(size?["max"]?.bytes ?? UInt64(Int.max), UInt64(Int.max)))
      attributes = node["attributes"]?.record?.compactMapValues(\.string) ?? [:]
      every = node["every"]?.integer ?? 1
      invert = node["invert"]?.boolean ?? false
    }

    /// True when the frame meets every condition but `every`.
    func matches(_ frame: Frame) -> Bool {
      let subject = onName ? String(frame.meta.name.split(separator: "/").last ?? "") : frame.meta.name
      if !globs.isEmpty, !globs.contains(where: { $0.matches(subject) }) { return false }
      if let regex, (try? regex.firstMatch(in: subject)) == nil { return false }
      if let series, !series.contains(frame.meta.series) { return false }
      if !frameRange.contains(frame.meta.frame) { return false }
      if !sizeRange.contains(frame.byteCount) { return false }
      for (key, value) in attributes where frame.meta.attributes[key] != value { return false }
      return true
    }

    mutating func transform(_ frame: inout Frame, _ context: StageContext) -> Bool {
      guard frame.kind == .data else { return true }
      var pass = matches(frame) != invert
      if pass, every > 1 {
        pass = matched % every == 0
        matched += 1
      }
      guard pass else {
        frame.confirm()  // not wanted downstream: nothing for a sink to confirm
        return false
      }
      return true
    }
  }
}
