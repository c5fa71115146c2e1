import HidraGraph

/// `generate`: a synthetic detector, for demos, tests and benchmarks.
public enum GenerateSource {
  public static let dtypes = ["uint8", "uint16", "uint32", "float32"]

  public static let spec = NodeTypeSpec(
    name: "generate", kind: .source,
    summary: "a synthetic detector: frames of a given size at a given rate",
    details: """
      Makes data frames of `size` bytes (or `shape` × `dtype`), grouped into series of \
      `frames_per_series`, each series opened by a control frame with a header and closed by a series \
      end. Content is deterministic (a function of `seed`, series and frame number) so sinks can verify \
      every byte. Without `rate` it runs as fast as its consumers allow; without `count` or `duration` \
      it runs until stopped.
      """,
    options: [
      OptionSpec(
        "size", .size(min: 1), default: "1MiB",
        doc: "Payload bytes per frame (ignored when `shape` is given)."),
      OptionSpec(
        "shape", .list(.integer(min: 1), minCount: 2),
        doc: "Image shape `[width, height]`; the size is width × height × dtype size."),
      OptionSpec("dtype", .choice(dtypes), default: "uint16", doc: "Pixel type, used with `shape`."),
      OptionSpec("count", .integer(min: 1), doc: "Stop after this many frames."),
      OptionSpec("duration", .duration, doc: "Stop after this long."),
      OptionSpec("rate", .rate, doc: "Frames per second; as fast as possible when absent."),
      OptionSpec(
        "frames_per_series", .integer(min: 1),
        doc: "Frames in one series; one series for the whole run when absent."),
      OptionSpec("first_series", .integer(min: 0), default: "1", doc: "Number of the first series."),
      OptionSpec(
        "name", .template(fields: ["series", "frame", "graph", "node"], attributes: false),
        default: "series_{series}/frame_{frame:06}.raw", doc: "Name (relative path) given to each frame."),
      OptionSpec("seed", .integer(min: 0), default: "0", doc: "Seed of the deterministic content."),
      OptionSpec("attributes", .dictionary(.string), doc: "Free-form attributes put on every frame."),
    ],
    example: """
      detector:
        type: generate
        shape: [1028, 512]
        dtype: uint16
        rate: 100/s
        count: 1000
        frames_per_series: 250
      """,
    check: { check in
      if let shape = check.node["shape"]?.list, shape.count != 2 {
        check.error("shape", "'shape' is [width, height], got \(shape.count) numbers")
      }
    })
}
