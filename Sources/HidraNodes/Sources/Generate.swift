import HidraGraph
import HidraRuntime

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
    },
    touchesPayload: true,
    // Synthetic: a frame not made yet is not lost.
    canWait: true)
}

#if canImport(Glibc)
  import Glibc
#endif

extension GenerateSource {
  /// Bytes per element of each dtype.
  static let elementSize = ["uint8": 1, "uint16": 2, "uint32": 4, "float32": 4]

  /// The running generator.
  struct Body: StageBody {
    let size: Int
    let shape: [Int]?
    let dtype: String
    let count: Int?
    let duration: Double?
    let interval: UInt64?
    let framesPerSeries: Int?
    let firstSeries: Int
    let name: PathTemplate
    /// What each field of `name` is, by position: resolved once, not compared
    /// by name for every frame.
    let nameFields: [NameField]
    let content: GeneratedContent
    let attributes: [String: String]
    let graphName: String
    let nodeName: String

    init(node: Node, graph: Graph) throws {
      let shape = node["shape"]?.list?.compactMap(\.integer)
      dtype = node["dtype"]?.string ?? "uint16"
      if let shape {
        size = shape.reduce(1, *) * (GenerateSource.elementSize[dtype] ?? 1)
      } else {
        size = Int(node["size"]?.bytes ?? 1 << 20)
      }
      self.shape = shape
      count = node["count"]?.integer
      duration = node["duration"]?.seconds
      interval = node["rate"]?.perSecond.map { UInt64(1e9 / $0) }
      framesPerSeries = node["frames_per_series"]?.integer
      firstSeries = node["first_series"]?.integer ?? 1
      let template = node["name"]?.string ?? "series_{series}/frame_{frame:06}.raw"
      switch PathTemplate.parse(template, allowed: ["series", "frame", "graph", "node"], attributes: false) {
      case .success(let parsed): name = parsed
      case .failure(let error): throw NodeSetupError("name template: \(error.message)")
      }
      nameFields = name.fields.map { NameField(rawValue: $0) ?? .node }
      content = GeneratedContent(seed: UInt64(node["seed"]?.integer ?? 0), size: size)
      attributes = node["attributes"]?.record?.compactMapValues(\.string) ?? [:]
      graphName = graph.name
      nodeName = node.name
    }

    mutating func run(_ context: StageContext) throws {
      // Local copies of what every frame reads: read through `self` (inout
      // here) inside the loop's closures, each was retained and released per
      // frame, five of each.
      let (content, nameFields, graphName, nodeName) = (content, nameFields, graphName, nodeName)
      let (shape, dtype, attributes) = (shape, dtype, attributes)
      let start = monotonicNanos()
      let end = duration.map { start + UInt64($0 * 1e9) }
      var id: UInt64 = 0
      var series = firstSeries
      var inSeries = 0
      var made = 0
      var open = false
      func header(_ series: Int) -> Payload {
        var fields = ["\"series\": \(series)", "\"generator\": \"hidra generate\"", "\"size\": \(size)"]
        if let shape { fields.append("\"shape\": [\(shape.map(String.init).joined(separator: ", "))]") }
        fields.append("\"dtype\": \"\(dtype)\"")
        if let framesPerSeries { fields.append("\"frames\": \(framesPerSeries)") }
        return Payload(copying: Array(("{" + fields.joined(separator: ", ") + "}").utf8))
      }
      // Unpaced, frames go out in batches; paced, each goes out on time.
      var batch = FrameBatch()
      while !context.isStopping {
        if let count, made >= count { break }
        if let end, monotonicNanos() >= end { break }
        if !open {
          id += 1
          batch.append(.seriesStart(series, id: id, header: header(series), attributes: attributes))
          open = true
          inSeries = 0
        }
        if let interval {
          guard batch.isEmpty || context.emit(&batch) else { return }
          Self.sleep(until: start + UInt64(made) * interval)
        }
        let payload = Payload(count: size) { content.fill($0, series: series, frame: inSeries) }
        id += 1
        let frameName = name.renderByPosition { position -> PathTemplate.FieldValue in
          switch nameFields[position] {
          case .series: return .integer(series)
          case .frame: return .integer(inSeries)
          case .graph: return .text(graphName)
          case .node: return .text(nodeName)
          }
        }
        let meta = FrameMeta(
          id: id, series: series, frame: inSeries, name: frameName,
          createdNanos: wallNanos(),
          shape: shape, dtype: shape == nil ? nil : dtype, attributes: attributes)
        batch.append(Frame(kind: .data, meta: meta, parts: PayloadParts(payload)))
        made += 1
        inSeries += 1
        if let framesPerSeries, inSeries >= framesPerSeries {
          id += 1
          batch.append(.seriesEnd(series, id: id, frames: inSeries))
          open = false
          series += 1
        }
        if batch.isFull || interval != nil {
          guard context.emit(&batch) else { return }
        }
      }
      if open {
        id += 1
        batch.append(.seriesEnd(series, id: id, frames: inSeries))
      }
      context.emit(&batch)
    }

    /// The fields a frame's name may use (the template's parser allows no other).
    enum NameField: String {
      case series, frame, graph, node
    }

    static func sleep(until deadline: UInt64) {
      var time = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
      while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &time, nil) == EINTR {}
    }
  }
}
