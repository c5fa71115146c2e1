/// The parts of the graph language that are not node options: the top level, hosts,
/// the keys every node has, and edges. Declared as data like node options, so that
/// validation and the reference read the same declaration.
public enum GraphLanguage {
  /// Keys of the file's top-level mapping.
  public static let topLevel: [OptionSpec] = [
    OptionSpec(
      "graph", .string,
      doc: "The graph's name, used in metrics, logs and endpoints; defaults to the file name."),
    OptionSpec("description", .string, doc: "Free text: what this graph is for."),
    OptionSpec("hosts", .dictionary(.record(hostOptions)), doc: "The hosts of a multi-host graph, by name."),
    OptionSpec("nodes", .dictionary(.node), required: true, doc: "The nodes, by name."),
  ]

  /// Options of one entry under `hosts:`.
  public static let hostOptions: [OptionSpec] = [
    OptionSpec(
      "address", .string, required: true, doc: "Host name or IP address the other hosts reach this host at."),
    OptionSpec(
      "base_port", .integer(min: 1024, max: 65000), default: "5600",
      doc: "First TCP port Hidra binds on this host for edges that cross hosts."),
    OptionSpec("description", .string, doc: "Free text."),
  ]

  /// Keys every node has, whatever its type.
  public static let commonNodeOptions: [OptionSpec] = [
    OptionSpec(
      "type", .string, required: true, doc: "The node type, one of those listed under Node types below."),
    OptionSpec(
      "input", .input,
      doc: "The one node this node reads from: a node name, or a mapping with `from:` and edge options."),
    OptionSpec("inputs", .list(.input), doc: "Several inputs, each written like `input`. Frames are merged."),
    OptionSpec(
      "host", .string, doc: "The host (from `hosts:`) this node runs on; defaults to the first host."),
    OptionSpec("description", .string, doc: "Free text."),
  ]

  /// Options of an edge, written as a mapping under `input:` or in `inputs:`.
  public static let edgeOptions: [OptionSpec] = [
    OptionSpec("from", .string, required: true, doc: "The node whose output this edge reads."),
    OptionSpec(
      "delivery", .choice(Delivery.allCases.map(\.rawValue)), default: "guaranteed",
      doc:
        "What happens when the buffer is full: wait (`guaranteed`), drop the new frame (`best-effort`) or drop the oldest (`latest`)."
    ),
    OptionSpec(
      "buffer",
      .record([
        OptionSpec(
          "frames", .integer(min: 1),
          doc: "Most data frames queued on the edge (default: 1024 guaranteed, 64 best-effort, 4 latest)."),
        OptionSpec(
          "bytes", .size(min: 1),
          doc: "Most payload bytes queued on the edge (default: 1GiB guaranteed, 256MiB otherwise)."),
      ]),
      doc: "Bounds of the edge's queue; whichever is reached first counts as full."),
    OptionSpec(
      "spill", .path(.directory),
      doc: "Guaranteed edges only: a directory where frames go when the buffer is full, instead of waiting."),
    OptionSpec(
      "sample",
      .record([OptionSpec("every", .integer(min: 1), required: true, doc: "Keep one data frame in N.")]),
      doc: "Thinning: keep every Nth data frame. Control frames always pass."),
    OptionSpec(
      "rate", .record([OptionSpec("max", .rate, required: true, doc: "Most data frames per second.")]),
      doc: "Thinning: at most this many data frames per second. Control frames always pass."),
  ]
}
