import HidraGraph

/// `checksum`: computes (or verifies) checksums of every data frame's payload.
public enum ChecksumNode {
  public static let algorithms = ["xxh3", "xxh64", "sha256", "md5"]

  public static let spec = NodeTypeSpec(
    name: "checksum", kind: .checksum,
    summary: "computes or verifies checksums of every frame's payload, in place",
    details: """
      `compute` adds each algorithm's digest to the frame's metadata, reading the payload where it is. \
      `verify` compares against the digest the frame already carries (from the detector or an earlier \
      checksum node); a mismatch is counted as an error and handled per `on_mismatch`.
      """,
    options: [
      OptionSpec(
        "algorithms", .list(.choice(algorithms), minCount: 1), default: "xxh3",
        doc: "Digests to compute: `xxh3` (xxh3-64, fastest), `xxh64`, `sha256`, `md5`."),
      OptionSpec(
        "mode", .choice(["compute", "verify"]), default: "compute",
        doc: "Compute digests, or verify those the frame carries."),
      OptionSpec(
        "on_mismatch", .choice(["drop", "pass"]), default: "drop",
        doc:
          "With `verify`: drop a frame whose digest differs, or pass it on marked as bad. Both count an error."
      ),
    ],
    constraints: [.onlyWhen(option: "on_mismatch", when: "mode", values: ["verify"])],
    example: """
      sum:
        type: checksum
        input: detector
        algorithms: [xxh3, sha256]
      """)
}
