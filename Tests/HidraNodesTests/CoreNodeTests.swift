import HidraGraph
import HidraNodes
import HidraRuntime
import Testing

@Suite struct GenerateTests {
  @Test func seriesAndDeterministicContent() throws {
    let (recorder, metrics) = try Harness.run(
      """
      nodes:
        det: {type: generate, size: 1000, count: 10, frames_per_series: 4, first_series: 7, seed: 42}
        out: {type: record, input: det}
      """)
    let kinds = recorder.frames(of: "out").map { frame -> String in
      switch frame.kind {
      case .seriesStart: return "S\(frame.meta.series)"
      case .seriesEnd: return "E\(frame.meta.series)"
      case .data: return "\(frame.meta.frame)"
      }
    }
    #expect(kinds == ["S7", "0", "1", "2", "3", "E7", "S8", "0", "1", "2", "3", "E8", "S9", "0", "1", "E9"])
    let content = GeneratedContent(seed: 42, size: 1000)
    for frame in recorder.data(of: "out") {
      #expect(frame.byteCount == 1000)
      #expect(content.verify(frame.parts[0].bytes, series: frame.meta.series, frame: frame.meta.frame))
      #expect(!content.verify(frame.parts[0].bytes, series: frame.meta.series, frame: frame.meta.frame + 1))
    }
    #expect(recorder.data(of: "out").first?.meta.name == "series_7/frame_000000.raw")
    #expect(recorder.frames(of: "out").last?.meta.attributes["frames"] == "2")
    #expect(metrics.node("det")?.framesOut.load(ordering: .relaxed) == 16)
    let ids = recorder.frames(of: "out").map(\.meta.id)
    #expect(ids == ids.sorted() && Set(ids).count == ids.count, "ids increase")
  }

  /// The documented layout, worked out here without `fill` or `verify`: the
  /// pattern (SplitMix64 words, little-endian) with the series and frame
  /// numbers XORed into the first 16 bytes, or into as many as there are.
  @Test(arguments: [1000, 16, 10, 3])
  func contentIsThePatternStampedWithSeriesAndFrame(size: Int) {
    let content = GeneratedContent(seed: 42, size: size)
    var state: UInt64 = 42
    var expected: [UInt8] = []
    while expected.count < size {
      state &+= 0x9E37_79B9_7F4A_7C15
      var z = state
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      z ^= z >> 31
      expected += (0..<8).map { UInt8(truncatingIfNeeded: z >> (8 * $0)) }
    }
    expected.removeLast(expected.count - size)
    #expect(content.pattern == expected)
    let (series, frame) = (0x0102_0304_0506_0708, 0x1112_1314_1516_1718)
    for index in 0..<min(16, size) {
      let number = UInt64(index < 8 ? series : frame)
      expected[index] ^= UInt8(truncatingIfNeeded: number >> (8 * UInt64(index % 8)))
    }
    var filled = [UInt8](repeating: 0, count: size)
    filled.withUnsafeMutableBytes { content.fill($0, series: series, frame: frame) }
    #expect(filled == expected)
    let verified = filled.withUnsafeBytes { content.verify($0, series: series, frame: frame) }
    #expect(verified)
  }

  @Test func shapeGivesSizeAndMetadata() throws {
    let (recorder, _) = try Harness.run(
      """
      nodes:
        det: {type: generate, shape: [64, 32], dtype: uint32, count: 2, attributes: {beamline: p11}}
        out: {type: record, input: det}
      """)
    let frame = try #require(recorder.data(of: "out").first)
    #expect(frame.byteCount == 64 * 32 * 4)
    #expect(frame.meta.shape == [64, 32])
    #expect(frame.meta.dtype == "uint32")
    #expect(frame.meta.attributes["beamline"] == "p11")
    let header = try #require(recorder.frames(of: "out").first)
    #expect(header.kind == .seriesStart)
    #expect(String(decoding: header.parts[0].bytes, as: UTF8.self).contains("\"shape\": [64, 32]"))
  }
}

@Suite struct ChecksumTests {
  func digest(_ algorithm: String, _ text: String) -> String {
    ChecksumNode.Digest.hex(algorithm, [Payload(copying: Array(text.utf8))])
  }

  @Test func knownVectors() {
    #expect(digest("xxh3", "") == "2d06800538d394c2")
    #expect(digest("xxh64", "") == "ef46db3751d8e999")
    #expect(digest("sha256", "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    #expect(digest("md5", "abc") == "900150983cd24fb0d6963f7d28e17f72")
  }

  @Test func partsHashLikeTheirConcatenation() {
    let whole = Array((0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
    let parts = [
      Payload(copying: whole[..<3]), Payload(copying: whole[3..<70_001]), Payload(copying: whole[70_001...]),
    ]
    for algorithm in ChecksumNode.algorithms {
      #expect(
        ChecksumNode.Digest.hex(algorithm, parts)
          == ChecksumNode.Digest.hex(algorithm, [Payload(copying: whole)]))
    }
  }

  @Test func computeThenVerify() throws {
    let (recorder, metrics) = try Harness.run(
      """
      nodes:
        det: {type: generate, size: 4096, count: 20}
        sum: {type: checksum, input: det, algorithms: [xxh3, sha256]}
        check: {type: checksum, input: sum, algorithms: [xxh3, sha256], mode: verify}
        out: {type: record, input: check}
      """)
    let data = recorder.data(of: "out")
    #expect(data.count == 20)
    for frame in data {
      #expect(frame.meta.checksums["xxh3"] == ChecksumNode.Digest.hex("xxh3", frame.parts))
      #expect(frame.meta.checksums["sha256"]?.count == 64)
    }
    #expect(metrics.node("check")?.errors.load(ordering: .relaxed) == 0)
  }

  @Test func verifyDropsOrMarksMismatches() throws {
    // Frames without a carried digest cannot verify: each is a mismatch.
    let (recorder, metrics) = try Harness.run(
      """
      nodes:
        det: {type: generate, size: 100, count: 5}
        drop: {type: checksum, input: det, algorithms: [md5], mode: verify}
        mark: {type: checksum, input: det, algorithms: [md5], mode: verify, on_mismatch: pass}
        dropped: {type: record, input: drop}
        marked: {type: record, input: mark}
      """)
    #expect(recorder.data(of: "dropped").isEmpty)
    #expect(recorder.frames(of: "dropped").count == 2, "control frames still pass")
    #expect(recorder.data(of: "marked").count == 5)
    #expect(recorder.data(of: "marked").allSatisfy { $0.meta.attributes["checksum_mismatch"] == "md5" })
    #expect(metrics.node("drop")?.errors.load(ordering: .relaxed) == 5)
    #expect(metrics.node("mark")?.errors.load(ordering: .relaxed) == 5)
  }
}

@Suite struct FilterTests {
  /// Runs one filter over 3 series of 10 frames of 100..1000 bytes and returns
  /// the (series, frame) pairs that passed.
  func passed(_ options: String) throws -> [[Int]] {
    let (recorder, _) = try Harness.run(
      """
      nodes:
        det: {type: generate, size: 100, count: 30, frames_per_series: 10, attributes: {beamline: p11}}
        f: {type: filter, input: det, \(options)}
        out: {type: record, input: f}
      """)
    #expect(recorder.frames(of: "out").count(where: { $0.kind != .data }) == 6, "control frames always pass")
    return recorder.data(of: "out").map { [$0.meta.series, $0.meta.frame] }
  }

  @Test func conditions() throws {
    #expect(try passed("series: [2]").map { $0[0] } == Array(repeating: 2, count: 10))
    #expect(try passed("frames: {from: 3, to: 4}") == [[1, 3], [1, 4], [2, 3], [2, 4], [3, 3], [3, 4]])
    #expect(try passed("glob: [\"series_3/*\"]").count == 10)
    #expect(try passed("glob: [\"*_000009.raw\"], on: name") == [[1, 9], [2, 9], [3, 9]])
    #expect(try passed("glob: [\"*_000009.raw\"]").isEmpty, "on: path by default, and * does not cross '/'")
    #expect(try passed("regex: \"frame_00000[12]\"").count == 6)
    #expect(try passed("size: {min: 101}").isEmpty)
    #expect(try passed("attributes: {beamline: p11}").count == 30)
    #expect(try passed("attributes: {beamline: p10}").isEmpty)
    #expect(try passed("every: 7").map { $0[0] * 100 + $0[1] } == [100, 107, 204, 301, 308])
    #expect(try passed("series: [2], invert: true").count == 20)
  }
}

@Suite struct SplitTests {
  @Test func broadcastSharesPayloads() throws {
    let (recorder, _) = try Harness.run(
      """
      nodes:
        det: {type: generate, size: 65536, count: 50}
        fan: {type: split, input: det}
        a: {type: record, input: fan}
        b: {type: record, input: fan}
      """)
    let a = recorder.data(of: "a")
    let b = recorder.data(of: "b")
    #expect(a.count == 50 && b.count == 50)
    for (x, y) in zip(a, b) { #expect(x.parts[0] === y.parts[0], "the same bytes, never copied") }
  }

  @Test func roundRobinAndByKey() throws {
    let (recorder, _) = try Harness.run(
      """
      nodes:
        det: {type: generate, size: 10, count: 40, frames_per_series: 10}
        rr: {type: split, input: det, mode: round-robin}
        key: {type: split, input: det, mode: by-key, key: series}
        rr1: {type: record, input: rr}
        rr2: {type: record, input: rr}
        k1: {type: record, input: key}
        k2: {type: record, input: key}
      """)
    #expect(recorder.data(of: "rr1").count == 20 && recorder.data(of: "rr2").count == 20)
    #expect(
      recorder.frames(of: "rr1").count(where: { $0.kind == .seriesStart }) == 4,
      "control frames to every branch")
    let k1 = Set(recorder.data(of: "k1").map(\.meta.series))
    let k2 = Set(recorder.data(of: "k2").map(\.meta.series))
    #expect(k1.isDisjoint(with: k2), "one series, one branch")
    #expect(k1.union(k2) == [1, 2, 3, 4])
    #expect(recorder.data(of: "k1").count + recorder.data(of: "k2").count == 40)
  }
}

/// Cheap nodes fused onto their producer's thread (`Plan.fusedEdges`).
@Suite struct FusionTests {
  static func plan(_ yaml: String) throws -> Plan {
    let result = GraphValidator(catalog: Harness.catalog).validate(text: yaml, file: "t.yaml")
    #expect(!result.diagnostics.hasErrors, "\(result.diagnostics.sorted.map(\.description))")
    return Plan(try #require(result.graph), catalog: Harness.catalog)
  }

  @Test func fusesCheapNodesBehindPlainGuaranteedEdges() throws {
    let plan = try Self.plan(
      """
      nodes:
        det: {type: generate, size: 100, count: 1}
        pick: {type: filter, input: det, every: 2}
        sum: {type: checksum, input: pick, algorithms: [xxh3, xxh64]}
        slow: {type: checksum, input: sum, algorithms: [sha256]}
        disk: {type: store, input: slow, root: /tmp/hidra-fusion-plan}
        net: {type: zmq, listen: "tcp://127.0.0.1:5999"}
        keep: {type: filter, input: net, glob: ["*.raw"]}
        hash: {type: checksum, input: keep}
        disk2: {type: store, input: hash, root: /tmp/hidra-fusion-plan-2}
      """)
    // The filter rides on generate's thread; the checksum does not, since
    // generate already passes over every byte (two passes go faster on two
    // cores); sha256 is never fused. Behind a network source, filter and xxh3
    // checksum both ride on the source's thread.
    #expect(plan.stages.map(\.name) == ["det", "sum", "slow", "disk", "net", "disk2"])
    #expect(plan.stages[0].fused == ["pick"])
    #expect(plan.stages[4].fused == ["keep", "hash"])
    #expect(plan.links.map(\.transport) == [.fused, .queue, .queue, .queue, .fused, .fused, .queue])
    #expect(plan.text.contains("then keep, hash on the same thread"))
  }

  @Test func keepsQueuesWhereTheyPromiseSomething() throws {
    let plan = try Self.plan(
      """
      nodes:
        det: {type: generate, size: 100, count: 1}
        a: {type: filter, input: {from: det, delivery: latest}, every: 2}
        b: {type: filter, input: {from: det, sample: {every: 2}}, every: 2}
        other: {type: generate, size: 100, count: 1}
        c: {type: checksum, input: other}
        d: {type: record, input: other}
        e: {type: record, inputs: [a, b, c]}
      """)
    // latest and sampled edges, and a producer with two consumers, keep their queues.
    #expect(plan.links.allSatisfy { $0.transport == .queue })
    #expect(plan.stages.count == 7)
  }

  @Test func pacesEdgesWhoseSourcesCanWait() throws {
    let plan = try Self.plan(
      """
      nodes:
        det: {type: generate, size: 100, count: 1}
        sum: {type: checksum, input: det, algorithms: [sha256]}
        disk: {type: store, input: sum, root: /tmp/hidra-pace-plan}
        view: {type: record, input: {from: sum, delivery: latest}}
        net: {type: zmq, listen: "tcp://127.0.0.1:5998"}
        both: {type: record, inputs: [det, net]}
        files: {type: eiger-filewriter, url: "http://127.0.0.1:5997"}
        disk2: {type: store, input: files, root: /tmp/hidra-pace-plan-2}
      """)
    // generate and the file writer can wait, a network source cannot; a latest
    // edge never waits. An edge is paced when every source upstream of its
    // producer can wait (det -> both is, though both also reads from the network).
    let paced = plan.links.filter(\.paced).map { "\($0.edge.from)->\($0.edge.to)" }
    #expect(paced == ["det->sum", "sum->disk", "det->both", "files->disk2"])
    #expect(
      plan.text.contains("paced: the producer waits at 4 MiB queued (every source feeding it can wait)"))
  }

  /// A fused chain does what the same nodes do on their own threads, and the
  /// counters still show every node and edge.
  @Test func aFusedChainBehavesAndCountsLikeStages() throws {
    let (recorder, metrics) = try Harness.run(
      """
      nodes:
        det: {type: generate, size: 3000, count: 40, frames_per_series: 10, seed: 2}
        pick: {type: filter, input: det, every: 2}
        sum: {type: checksum, input: pick}
        out: {type: record, input: sum}
      """)
    let frames = recorder.frames(of: "out")
    let data = frames.filter { $0.kind == .data }
    #expect(data.count == 20)
    #expect(frames.count == 20 + 4 * 2, "every series start and end passes the filter")
    let content = GeneratedContent(seed: 2, size: 3000)
    for frame in data {
      #expect(frame.meta.frame % 2 == 0)
      #expect(frame.meta.checksums["xxh3"] == ChecksumNode.Digest.hex("xxh3", frame.parts))
      let bytes = frame.parts.flatMap { Array($0.bytes) }
      bytes.withUnsafeBytes {
        #expect(content.verify($0, series: frame.meta.series, frame: frame.meta.frame))
      }
    }
    let pick = try #require(metrics.node("pick")).snapshot()
    #expect(pick.framesIn == 48 && pick.framesOut == 28)
    let sum = try #require(metrics.node("sum")).snapshot()
    #expect(sum.framesIn == 28 && sum.framesOut == 28)
    let edge = try #require(metrics.edges.first { $0.from == "det" && $0.to == "pick" }).snapshot()
    // As on a queue: offered counts data frames, delivered every frame.
    #expect(edge.offered == 40 && edge.delivered == 48 && edge.deliveredData == 40 && edge.queuedFrames == 0)
  }
}
