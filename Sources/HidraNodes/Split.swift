import HidraGraph

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
