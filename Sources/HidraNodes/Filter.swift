import HidraGraph

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
    })
}
