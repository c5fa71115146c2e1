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
