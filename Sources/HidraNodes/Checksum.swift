import CXXHash
import Crypto
import HidraGraph
import HidraRuntime

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
      """,
    // xxh3 and xxh64 hash faster than memory delivers the bytes: run them on the
    // producer's thread (unless that one passes over the bytes too, see
    // touchesPayload). sha256 and md5 are slow enough to deserve a core of their own.
    fusable: { node in
      (node["algorithms"]?.list?.compactMap(\.string) ?? ["xxh3"]).allSatisfy {
        $0 == "xxh3" || $0 == "xxh64"
      }
    },
    touchesPayload: true)
}

extension ChecksumNode {
  /// Digests of a frame's payload parts, in place (never copied).
  public enum Digest {
    /// Lowercase hex digest of `parts` with `algorithm` (`xxh3`, `xxh64`, `sha256`, `md5`).
    public static func hex(_ algorithm: String, _ parts: some Collection<Payload>) -> String {
      if let value = value64(algorithm, parts) { return Checksums.hex(value) }
      switch algorithm {
      case "sha256":
        var hasher = SHA256()
        for part in parts { hasher.update(bufferPointer: part.bytes) }
        return hexString(hasher.finalize())
      case "md5":
        var hasher = Insecure.MD5()
        for part in parts { hasher.update(bufferPointer: part.bytes) }
        return hexString(hasher.finalize())
      default:
        preconditionFailure("unknown checksum algorithm \(algorithm)")
      }
    }

    /// The digest of `parts` with a 64-bit `algorithm` (`xxh3`, `xxh64`); nil for the others.
    public static func value64(_ algorithm: String, _ parts: some Collection<Payload>) -> UInt64? {
      guard let integer = Checksums.Integer(rawValue: algorithm) else { return nil }
      if parts.count == 1, let part = parts.first { return value64(integer, part.bytes) }
      return value64(integer, parts: parts)
    }

    /// The digest of a frame's parts with a 64-bit `algorithm`: a single part
    /// (almost every frame) in one call, several streamed.
    public static func value64(_ algorithm: Checksums.Integer, _ parts: PayloadParts) -> UInt64 {
      if let bytes = parts.singlePartBytes { return value64(algorithm, bytes) }
      return value64(algorithm, parts: parts)
    }

    static func value64(_ algorithm: Checksums.Integer, _ bytes: UnsafeRawBufferPointer) -> UInt64 {
      switch algorithm {
      case .xxh3: hidra_xxh3_64(bytes.baseAddress, bytes.count)
      case .xxh64: hidra_xxh64(bytes.baseAddress, bytes.count, 0)
      }
    }

    /// Several parts (or none), streamed through one state.
    static func value64(_ algorithm: Checksums.Integer, parts: some Collection<Payload>) -> UInt64 {
      switch algorithm {
      case .xxh3:
        let state = hidra_xxh3_create()!
        defer { hidra_xxh3_free(state) }
        for part in parts { hidra_xxh3_update(state, part.bytes.baseAddress, part.count) }
        return hidra_xxh3_digest(state)
      case .xxh64:
        let state = XXH64_createState()!
        defer { XXH64_freeState(state) }
        XXH64_reset(state, 0)
        for part in parts { XXH64_update(state, part.bytes.baseAddress, part.count) }
        return XXH64_digest(state)
      }
    }

    static func hexString(_ bytes: some Sequence<UInt8>) -> String {
      let digits = Array("0123456789abcdef".utf8)
      var out: [UInt8] = []
      for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 15)])
      }
      return String(decoding: out, as: UTF8.self)
    }
  }

  /// The running checksum node.
  struct Body: FrameTransform {
    let algorithms: [String]
    let verify: Bool
    let dropMismatches: Bool
    /// `algorithms`, when computing only digests kept as integers (`xxh3`,
    /// `xxh64`): the path of every fused checksum node, with no name compared
    /// per frame.
    let integers: [Checksums.Integer]?

    init(node: Node) {
      algorithms = node["algorithms"]?.list?.compactMap(\.string) ?? ["xxh3"]
      verify = node["mode"]?.string == "verify"
      dropMismatches = node["on_mismatch"]?.string != "pass"
      let integers = algorithms.compactMap(Checksums.Integer.init(rawValue:))
      self.integers = !verify && integers.count == algorithms.count ? integers : nil
    }

    mutating func transform(_ frame: inout Frame, _ context: StageContext) -> Bool {
      if let integers, frame.kind == .data {
        for algorithm in integers {
          frame.meta.checksums.set(algorithm, Digest.value64(algorithm, frame.parts))
        }
        return true
      }
      if frame.kind == .data {
        var bad: [String] = []
        for algorithm in algorithms {
          if !verify, let value = Digest.value64(algorithm, frame.parts) {
            frame.meta.checksums.set(algorithm, value)  // spelled out only if someone reads it
            continue
          }
          let digest = Digest.hex(algorithm, frame.parts)
          if verify {
            if frame.meta.checksums[algorithm] != digest { bad.append(algorithm) }
          } else {
            frame.meta.checksums[algorithm] = digest
          }
        }
        if !bad.isEmpty {
          // Not read inside the closure: a frame a closure captures is copied
          // on every call, mismatch or not.
          let checksums = frame.meta.checksums
          let carried = bad.map { "\($0) \(checksums[$0] ?? "missing")" }.joined(separator: ", ")
          context.reportError(
            "mismatch", "checksum mismatch for '\(frame.meta.name)' (carried: \(carried))")
          if dropMismatches { return false }  // not confirmed: its source keeps the original
          frame.meta.attributes["checksum_mismatch"] = bad.joined(separator: ",")
        }
      }
      return true
    }
  }
}
