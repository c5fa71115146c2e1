import HidraGraph
import HidraRuntime

/// `split`: sends frames to the nodes that read it.
public enum SplitNode {
  public static let spec = NodeTypeSpec(
    name: "split", kind: .split,
    summary: "sends frames to every consumer, to one in turn, or to one chosen by a key",
    details: """
      Each node that names the split as input is one branch. `broadcast` sends every frame to every \
      branch (sharing the payload, never copying it); `round-robin` sends each data frame to the next \
      branch; `by-key` sends all frames with the same key to the same branch. Control frames go to \
      every branch in every mode.
      """,
    options: [
      OptionSpec(
        "mode", .choice(["broadcast", "round-robin", "by-key"]), default: "broadcast",
        doc: "How data frames are shared out."),
      OptionSpec(
        "key", .choice(["series", "frame", "name"], prefixes: ["attr."]),
        doc: "With `by-key`: what frames are grouped by."),
    ],
    constraints: [
      .requires(option: "mode", value: "by-key", requires: "key"),
      .onlyWhen(option: "key", when: "mode", values: ["by-key"]),
    ],
    example: """
      fan-out:
        type: split
        input: detector
        mode: round-robin
      """)
}

extension SplitNode {
  /// The running split. Control frames go to every branch in every mode.
  struct Body: StageBody {
    enum Mode { case broadcast, roundRobin, byKey(String) }
    let mode: Mode
    var next = 0

    init(node: Node) {
      switch node["mode"]?.string {
      case "round-robin": mode = .roundRobin
      case "by-key": mode = .byKey(node["key"]?.string ?? "series")
      default: mode = .broadcast
      }
    }

    /// The branch for a frame's key: FNV-1a of the key's text, so the same key
    /// always goes to the same branch, in every run.
    static func branch(for key: String, of count: Int) -> Int {
      var hash: UInt64 = 0xcbf2_9ce4_8422_2325
      for byte in key.utf8 {
        hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
      }
      return Int(hash % UInt64(count))
    }

    static func key(_ name: String, of frame: Frame) -> String {
      switch name {
      case "series": return String(frame.meta.series)
      case "frame": return String(frame.meta.frame)
      case "name": return frame.meta.name
      default: return frame.meta.attributes[String(name.dropFirst("attr.".count))] ?? ""
      }
    }

    mutating func run(_ context: StageContext) throws {
      if case .broadcast = mode {
        // Every frame to every branch: a batch at a time, as received.
        var batch = FrameBatch()
        while context.receive(into: &batch) {
          guard context.emit(&batch) else { return }
        }
        return
      }
      let branches = context.output.branchCount
      // Each frame is moved on, not copied (a copy retains every reference it holds).
      while let frame = context.receive() {
        let ok: Bool
        let kind = frame.kind
        switch (kind, mode) {
        case (.data, .roundRobin) where branches > 0:
          ok = context.output.send(consume frame, toBranch: next)
          next = (next + 1) % branches
        case (.data, .byKey(let name)) where branches > 0:
          let branch = Self.branch(for: Self.key(name, of: frame), of: branches)
          ok = context.output.send(consume frame, toBranch: branch)
        default:
          ok = context.emit(consume frame)
        }
        if !ok { return }
      }
    }
  }
}
