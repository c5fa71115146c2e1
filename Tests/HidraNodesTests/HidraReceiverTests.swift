import Foundation
import HidraClient
import HidraGraph
import HidraNodes
import HidraRuntime
import Testing

/// The Swift client library against a running native forward.
@Suite struct HidraReceiverTests {
  @Test func receivesEveryFrameOfAPushForwardIntact() throws {
    let port = ForwardTests.freePort()
    let receiver = try HidraReceiver(connect: "tcp://127.0.0.1:\(port)", pattern: .pull)
    let result = GraphValidator(catalog: NodeTypes.catalog).validate(
      text: """
        nodes:
          det: {type: generate, size: 10000, count: 30, frames_per_series: 10, seed: 11}
          sum: {type: checksum, input: det}
          out: {type: forward, input: sum, listen: "tcp://127.0.0.1:\(port)", chunk_size: 4096}
        """, file: "t.yaml")
    let runtime = try Runtime(graph: try #require(result.graph), factory: NodeRuntime())
    runtime.start()
    var frames: [Frame] = []
    while frames.count < 36, let frame = try receiver.receive(timeout: .seconds(10)) { frames.append(frame) }
    // The forward waits for the last acknowledgement before it ends.
    receiver.acknowledge()
    #expect(runtime.wait(timeoutNanos: 10_000_000_000))
    #expect(frames.count == 36, "30 data frames and 3 series of start and end")
    let content = GeneratedContent(seed: 11, size: 10000)
    let data = frames.filter { $0.kind == .data }
    #expect(data.map(\.meta.frame) == (0..<30).map { $0 % 10 })
    for frame in data {
      #expect(frame.parts.count == 3, "three chunks, kept as parts")
      let bytes = frame.parts.flatMap { Array($0.bytes) }
      bytes.withUnsafeBytes {
        #expect(content.verify($0, series: frame.meta.series, frame: frame.meta.frame))
      }
      #expect(frame.meta.checksums["xxh3"] == ChecksumNode.Digest.hex("xxh3", frame.parts))
    }
    #expect(receiver.errors.isEmpty)
    #expect(try receiver.receive(timeout: .milliseconds(100)) == nil)
    receiver.close()
  }
}

/// Acknowledged delivery (docs/wire.md, "Acknowledgements") and the request pattern.
@Suite struct AcknowledgementTests {
  static func start(_ yaml: String) throws -> Runtime {
    let result = GraphValidator(catalog: NodeTypes.catalog).validate(text: yaml, file: "t.yaml")
    #expect(!result.diagnostics.hasErrors, "\(result.diagnostics.sorted.map(\.description))")
    let runtime = try Runtime(graph: try #require(result.graph), factory: NodeRuntime())
    runtime.start()
    return runtime
  }

  /// A consumer that vanishes without acknowledging loses nothing: after
  /// `peer_timeout` its frames go to the next consumer, and the forward ends
  /// only when every frame was acknowledged.
  @Test func framesAConsumerDidNotAcknowledgeAreResent() throws {
    let port = ForwardTests.freePort()
    let runtime = try Self.start(
      """
      nodes:
        det: {type: generate, size: 3000, count: 100, frames_per_series: 50, seed: 4}
        out: {type: forward, input: det, listen: "tcp://127.0.0.1:\(port)", peer_timeout: 500ms}
      """)
    defer { if !runtime.wait(timeoutNanos: 0) { runtime.abort() } }
    var acknowledged: [Int] = []
    var unacknowledged: [Int] = []
    do {
      let first = try HidraReceiver(
        connect: "tcp://127.0.0.1:\(port)", credit: 8, autoAcknowledge: false)
      while acknowledged.count < 30, let frame = try first.receive(timeout: .seconds(10)) {
        if frame.kind == .data { acknowledged.append(Int(frame.meta.id)) }
        first.acknowledge()
      }
      // Take some more, then vanish: no acknowledgement, no bye.
      while unacknowledged.count < 5, let frame = try first.receive(timeout: .seconds(10)) {
        if frame.kind == .data { unacknowledged.append(Int(frame.meta.id)) }
      }
    }
    #expect(acknowledged.count == 30 && unacknowledged.count == 5)
    #expect(!runtime.wait(timeoutNanos: 200_000_000), "the forward waits for the lost frames")
    let second = try HidraReceiver(connect: "tcp://127.0.0.1:\(port)", credit: 8)
    var rest: [Frame] = []
    while let frame = try second.receive(timeout: .seconds(5)) {
      rest.append(frame)
      if rest.count(where: { $0.kind == .data }) == 70 { break }
    }
    second.acknowledge()
    #expect(runtime.wait(timeoutNanos: 10_000_000_000), "every frame acknowledged: the forward ends")
    let later = rest.filter { $0.kind == .data }.map { Int($0.meta.id) }
    #expect(Set(acknowledged).isDisjoint(with: later), "acknowledged frames are not sent again")
    #expect(Set(unacknowledged).isSubset(of: later), "unacknowledged frames are resent")
    #expect(Set(acknowledged + later).count == 100 && later.count == 70)
    #expect(rest.first?.kind == .seriesStart, "a new consumer first hears the open series")
    #expect(runtime.metrics.node("out")!.framesOut.load(ordering: .relaxed) == 100)
    second.close()
  }

  /// With two consumers, each frame goes to exactly one of them.
  @Test func framesAreSharedBetweenConsumers() throws {
    let port = ForwardTests.freePort()
    let one = try HidraReceiver(connect: "tcp://127.0.0.1:\(port)", credit: 2)
    let two = try HidraReceiver(connect: "tcp://127.0.0.1:\(port)", credit: 2)
    let runtime = try Self.start(
      """
      nodes:
        det: {type: generate, size: 1000, count: 200, seed: 4}
        out: {type: forward, input: det, listen: "tcp://127.0.0.1:\(port)"}
      """)
    defer { if !runtime.wait(timeoutNanos: 0) { runtime.abort() } }
    var ids: [[UInt64]] = [[], []]
    let deadline = ContinuousClock.now.advanced(by: .seconds(20))
    while ids[0].count + ids[1].count < 200, ContinuousClock.now < deadline {
      if let frame = try one.receive(timeout: .milliseconds(20)), frame.kind == .data {
        ids[0].append(frame.meta.id)
      }
      if let frame = try two.receive(timeout: .milliseconds(20)), frame.kind == .data {
        ids[1].append(frame.meta.id)
      }
    }
    one.acknowledge()
    two.acknowledge()
    #expect(runtime.wait(timeoutNanos: 10_000_000_000))
    #expect(ids[0].count + ids[1].count == 200)
    #expect(Set(ids[0]).isDisjoint(with: ids[1]))
    #expect(!ids[0].isEmpty && !ids[1].isEmpty, "both consumers got frames")
  }

  /// `request`: each request gets the newest frame, never an older one than
  /// the last, and never the same one twice.
  @Test func requestServesTheNewestFrame() throws {
    let port = ForwardTests.freePort()
    let runtime = try Self.start(
      """
      nodes:
        det: {type: generate, size: 2000, count: 300, rate: 500/s, seed: 9}
        sum: {type: checksum, input: det}
        out: {type: forward, input: {from: sum, delivery: latest}, pattern: request, listen: "tcp://127.0.0.1:\(port)"}
      """)
    defer { if !runtime.wait(timeoutNanos: 0) { runtime.abort() } }
    let receiver = try HidraReceiver(connect: "tcp://127.0.0.1:\(port)", pattern: .request)
    var data: [Frame] = []
    var sawStart = false
    while data.count < 10, let frame = try receiver.receive(timeout: .seconds(5)) {
      if frame.kind == .seriesStart { sawStart = true }
      if frame.kind == .data {
        #expect(sawStart, "the series start comes before the first frame")
        data.append(frame)
        usleep(30_000)  // a slow consumer: frames pass meanwhile
      }
    }
    #expect(data.count == 10)
    let ids = data.map(\.meta.id)
    #expect(ids == ids.sorted() && Set(ids).count == ids.count, "newer each time: \(ids)")
    for frame in data {
      #expect(frame.meta.checksums["xxh3"] == ChecksumNode.Digest.hex("xxh3", frame.parts))
    }
    receiver.close()
    #expect(runtime.wait(timeoutNanos: 10_000_000_000))
  }
}
