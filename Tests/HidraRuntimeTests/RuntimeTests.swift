import Foundation
import HidraGraph
import HidraRuntime
import Testing

/// The scheduler: stages on their own threads, connected by edge queues, with
/// drain, abort and failure. The stage bodies are small test doubles (see
/// Support.swift); the graphs are checked by `GraphValidator` like real ones.
@Suite("Runtime")
struct RuntimeTests {
  /// Sends 10,000 frames to a guaranteed sink and to a stalled sink behind a
  /// `delivery` edge with a buffer of 4; the source must finish while the stalled
  /// sink is still stalled.
  func isolation(_ delivery: Delivery, batched: Bool) throws -> (
    stored: [Frame], live: [Frame], liveEdge: EdgeCounters?
  ) {
    let graph = try TestGraphs.graph(
      """
      graph: isolation
      nodes:
        source:
          type: test-source
        store:
          type: test-sink
          input: source
        live:
          type: test-sink
          input: {from: source, delivery: \(delivery.rawValue), buffer: {frames: 4}}
      """)
    let finished = Gate()
    let release = Gate()
    let liveReading = Gate()
    let stored = Recorder()
    let live = Recorder()
    let runtime = try Runtime(
      graph: graph,
      factory: TestFactory(bodies: [
        "source": { CountingSource(count: 10_000, finished: finished, batched: batched) },
        "store": { RecordingSink(recorder: stored) },
        "live": { RecordingSink(recorder: live, stall: release, reading: liveReading) },
      ]))
    let liveEdge = runtime.metrics.edge(from: "source", to: "live")
    let storeEdge = runtime.metrics.edge(from: "source", to: "store")
    runtime.start()

    // The source finishes on its own while the live sink has not read a frame.
    #expect(finished.wait(seconds: 5), "the source did not finish while the live sink was stalled")
    #expect(!liveReading.isOpen, "the live sink was released before the source finished")
    #expect(live.count == 0)
    #expect(!runtime.wait(timeoutNanos: 20_000_000), "the run ended while a sink was stalled")
    #expect(liveEdge?.queuedFrames == 6, "series start, 4 data frames, series end")

    release.open()
    if !expectFinishes(runtime) { return (stored.all, live.all, liveEdge) }
    #expect(runtime.failures.isEmpty)
    #expect(!runtime.isAborted)

    let all = stored.all
    #expect(all.count == 10_002)
    #expect(all.first?.kind == .seriesStart)
    #expect(all.last?.kind == .seriesEnd)
    #expect(dataIndices(all) == Array(0..<10_000))
    #expect(storeEdge?.snapshot().totalDropped == 0)
    #expect(storeEdge?.delivered.load(ordering: .relaxed) == 10_002)
    #expect(liveEdge?.offered.load(ordering: .relaxed) == 10_000)
    #expect(liveEdge?.delivered.load(ordering: .relaxed) == 6)
    return (all, live.all, liveEdge)
  }

  /// How many bytes the relay -> sink edge holds with the sink stalled, when the
  /// source can wait or not: 100 frames of 256 KiB behind default guaranteed edges.
  func queuedBehindStalledSink(sourceCanWait: Bool) throws -> (queued: Int, stored: Int) {
    let graph = try TestGraphs.graph(
      """
      graph: pacing
      nodes:
        source: {type: test-source}
        relay: {type: test-relay, input: source}
        sink: {type: test-sink, input: relay}
      """)
    let release = Gate()
    let stored = Recorder()
    let runtime = try Runtime(
      graph: graph,
      factory: TestFactory(
        bodies: [
          "source": { CountingSource(count: 100, bytes: 256 << 10) },
          "relay": { RelayStage() },
          "sink": { RecordingSink(recorder: stored, stall: release) },
        ], waiting: sourceCanWait ? ["source"] : []))
    let first = try #require(runtime.metrics.edge(from: "source", to: "relay"))
    let second = try #require(runtime.metrics.edge(from: "relay", to: "sink"))
    runtime.start()
    // Wait until the frames stop moving (the source waits or is done).
    var last = -1
    for _ in 0..<100 where first.offered.load(ordering: .relaxed) != last || last < 0 {
      last = first.offered.load(ordering: .relaxed)
      Thread.sleep(forTimeInterval: 0.05)
    }
    let queued = first.queuedBytes + second.queuedBytes
    release.open()
    if expectFinishes(runtime) { #expect(runtime.failures.isEmpty) }
    return (queued, stored.all.count)
  }

  @Test("paced edges: behind a source that can wait, each guaranteed edge queues at most 4 MiB")
  func pacedEdgesQueueLittle() throws {
    let paced = try queuedBehindStalledSink(sourceCanWait: true)
    #expect(paced.queued > 0 && paced.queued <= 2 * Plan.pacedQueueBytes, "\(paced.queued) bytes queued")
    #expect(paced.stored == 102, "every frame arrives once the sink goes on")
    // A source that cannot wait fills the buffers it was given (here: all 25 MiB).
    let unpaced = try queuedBehindStalledSink(sourceCanWait: false)
    #expect(unpaced.queued == 100 * (256 << 10), "\(unpaced.queued) bytes queued")
    #expect(unpaced.stored == 102)
  }

  @Test(
    "isolation: a stalled latest sink keeps the newest 4 and never slows the source or its sibling",
    arguments: [false, true])
  func isolationLatest(batched: Bool) throws {
    let (_, live, counters) = try isolation(.latest, batched: batched)
    #expect(describe(live) == ["start1", "9996", "9997", "9998", "9999", "end1"])
    #expect(counters?.dropped(.oldest) == 9996)
    #expect(counters?.snapshot().totalDropped == 9996)
  }

  @Test(
    "isolation: a stalled best-effort sink keeps the first 4 and never slows the source or its sibling",
    arguments: [false, true])
  func isolationBestEffort(batched: Bool) throws {
    let (_, live, counters) = try isolation(.bestEffort, batched: batched)
    #expect(describe(live) == ["start1", "0", "1", "2", "3", "end1"])
    #expect(counters?.dropped(.full) == 9996)
    #expect(counters?.snapshot().totalDropped == 9996)
  }

  @Test("drain: after requestStop every frame the source emitted on a guaranteed edge is delivered")
  func drainDeliversEverything() throws {
    let graph = try TestGraphs.graph(
      """
      nodes:
        source: {type: test-source}
        sink:
          type: test-sink
          input: {from: source, delivery: guaranteed, buffer: {frames: 16}}
      """)
    let emitted = Counter()
    let refused = Counter()
    let reached = Gate()
    let received = Recorder()
    let runtime = try Runtime(
      graph: graph,
      factory: TestFactory(bodies: [
        "source": {
          UntilStoppedSource(emitted: emitted, refused: refused, reached: reached, threshold: 2000)
        },
        "sink": { RecordingSink(recorder: received) },
      ]))
    runtime.start()
    #expect(reached.wait(seconds: 5), "the source did not get going")
    runtime.requestStop()
    guard expectFinishes(runtime) else { return }

    let frames = received.all
    let count = emitted.value
    #expect(count >= 2000)
    #expect(refused.value == 0)
    #expect(
      dataIndices(frames) == Array(0..<count), "emitted \(count), received \(dataIndices(frames).count)")
    #expect(frames.first?.kind == .seriesStart)
    #expect(frames.last?.kind == .seriesEnd)
    #expect(runtime.failures.isEmpty)
    #expect(!runtime.isAborted)
    let edge = runtime.metrics.edge(from: "source", to: "sink")
    #expect(edge?.offered.load(ordering: .relaxed) == count)
    #expect(edge?.delivered.load(ordering: .relaxed) == count + 2)
    #expect(edge?.snapshot().totalDropped == 0)
  }

  @Test("abort: a run blocked on a sink that never reads ends at once; queued frames count as aborted")
  func abortEndsBlockedRun() throws {
    let graph = try TestGraphs.graph(
      """
      nodes:
        source: {type: test-source}
        stuck:
          type: test-sink
          input: {from: source, delivery: guaranteed, buffer: {frames: 4}}
      """)
    let emitted = Counter()
    let refused = Counter()
    let runtime = try Runtime(
      graph: graph,
      factory: TestFactory(bodies: [
        "source": { UntilStoppedSource(emitted: emitted, refused: refused) },
        "stuck": { NeverReadingSink() },
      ]))
    let edge = try #require(runtime.metrics.edge(from: "source", to: "stuck"))
    runtime.start()

    // The source fills the buffer (series start + 4 data frames) and waits with the 5th.
    let blocked = eventually {
      edge.queuedFrames == 5 && edge.offered.load(ordering: .relaxed) == 5
    }
    #expect(blocked, "the source did not fill the guaranteed edge")
    #expect(!runtime.wait(timeoutNanos: 50_000_000), "the run ended although its sink never reads")
    #expect(emitted.value == 4)

    runtime.abort()
    guard expectFinishes(runtime) else { return }
    #expect(runtime.isAborted)
    #expect(runtime.failures.isEmpty, "an abort is not a failure")
    #expect(
      edge.dropped(.aborted) == 5, "the four queued data frames and the one the source was waiting to queue")
    #expect(edge.delivered.load(ordering: .relaxed) == 0)
    #expect(emitted.value == 4)
    #expect(refused.value == 1, "the waiting send returned .closed")
  }

  @Test("abort: frames a stage had taken but not handed out are counted as abandoned")
  func abortCountsAbandonedFrames() throws {
    let graph = try TestGraphs.graph(
      """
      nodes:
        source: {type: test-source}
        sink: {type: test-sink, input: source}
      """)
    let sent = Gate()
    let tookOne = Gate()
    let afterAbort = Box<Bool?>(nil)
    let runtime = try Runtime(
      graph: graph,
      factory: TestFactory(bodies: [
        "source": { CountingSource(count: 10, finished: sent) },
        "sink": { HoldingSink(sent: sent, tookOne: tookOne, afterAbort: afterAbort) },
      ]))
    runtime.start()
    // The sink takes all 12 frames in one batch and hands itself one of them.
    #expect(tookOne.wait(seconds: 5), "the sink did not take its first frame")
    runtime.abort()
    guard expectFinishes(runtime) else { return }
    #expect(afterAbort.get() == false, "receive after abort reports the end of the input")
    let sink = runtime.metrics.node("sink")?.snapshot()
    let edge = runtime.metrics.edge(from: "source", to: "sink")
    #expect(edge?.delivered.load(ordering: .relaxed) == 12)
    #expect(edge?.dropped(.aborted) == 0, "nothing was left in the edge")
    #expect(sink?.framesIn == 1)
    #expect(sink?.abandoned == 11)
    // Every frame the edge delivered was either handed to the body or counted as abandoned.
    #expect(edge?.delivered.load(ordering: .relaxed) == (sink?.framesIn ?? 0) + (sink?.abandoned ?? 0))
  }

  @Test("a sink that throws fails the run and every stage exits")
  func throwingSinkFailsRun() throws {
    let graph = try TestGraphs.graph(
      """
      nodes:
        source: {type: test-source}
        good: {type: test-sink, input: source}
        bad: {type: test-sink, input: source}
      """)
    let good = Recorder()
    let runtime = try Runtime(
      graph: graph,
      factory: TestFactory(bodies: [
        "source": { UntilStoppedSource(emitted: Counter(), refused: Counter()) },
        "good": { RecordingSink(recorder: good) },
        "bad": { ThrowingSink(after: 10) },
      ]))
    runtime.start()
    guard expectFinishes(runtime) else { return }
    let failures = runtime.failures
    #expect(failures.count == 1)
    #expect(failures.first?.hasPrefix("bad:") == true, "\(failures)")
    #expect(failures.first?.contains("boom") == true, "\(failures)")
    #expect(runtime.isAborted, "a failing stage aborts the run")
  }

  @Test("a source that throws fails the run and every stage exits")
  func throwingSourceFailsRun() throws {
    let graph = try TestGraphs.graph(
      """
      nodes:
        source: {type: test-source}
        relay: {type: test-relay, input: source}
        sink: {type: test-sink, input: relay}
      """)
    let runtime = try Runtime(
      graph: graph,
      factory: TestFactory(bodies: [
        "source": { UntilStoppedSource(emitted: Counter(), refused: Counter(), throwAfter: 100) },
        "relay": { RelayStage() },
        "sink": { RecordingSink(recorder: Recorder()) },
      ]))
    runtime.start()
    guard expectFinishes(runtime) else { return }
    #expect(runtime.failures.count == 1)
    #expect(runtime.failures.first?.hasPrefix("source:") == true, "\(runtime.failures)")
  }

  @Test("a body that cannot be made fails the run and every stage exits")
  func failingFactoryFailsRun() throws {
    let graph = try TestGraphs.graph(
      """
      nodes:
        source: {type: test-source}
        sink: {type: test-sink, input: source}
      """)
    // No body for 'sink': makeBody throws on the sink's thread.
    let runtime = try Runtime(
      graph: graph,
      factory: TestFactory(bodies: [
        "source": { UntilStoppedSource(emitted: Counter(), refused: Counter()) }
      ]))
    runtime.start()
    guard expectFinishes(runtime) else { return }
    #expect(runtime.failures.count == 1)
    #expect(runtime.failures.first?.hasPrefix("sink:") == true, "\(runtime.failures)")
  }

  @Test("node types the factory cannot run make Runtime.init throw unsupportedNodes")
  func unsupportedNodes() throws {
    let graph = try TestGraphs.graph(
      """
      nodes:
        source: {type: test-source}
        odd: {type: test-unrunnable, input: source}
        sink: {type: test-sink, input: source}
      """)
    let error = #expect(throws: RuntimeError.self) {
      _ = try Runtime(graph: graph, factory: TestFactory(bodies: [:]))
    }
    guard case .unsupportedNodes(let nodes)? = error else {
      Issue.record("expected unsupportedNodes, got \(String(describing: error))")
      return
    }
    // One entry, naming the node and its type (the wording is the runtime's).
    #expect(nodes.count == 1, "\(nodes)")
    #expect(nodes.first?.contains("odd") == true, "\(nodes)")
    #expect(nodes.first?.contains("test-unrunnable") == true, "\(nodes)")
  }

  @Test("a node the factory refuses (unsupportedReason) makes Runtime.init throw with that reason")
  func refusedNode() throws {
    let graph = try TestGraphs.graph(
      """
      nodes:
        source: {type: test-source}
        sink: {type: test-sink, input: source}
      """)
    let factory = RefusingFactory(refusals: ["sink": "its option is still to come"])
    let error = #expect(throws: RuntimeError.self) { _ = try Runtime(graph: graph, factory: factory) }
    guard case .unsupportedNodes(let nodes)? = error else {
      Issue.record("expected unsupportedNodes, got \(String(describing: error))")
      return
    }
    #expect(nodes.count == 1, "\(nodes)")
    #expect(nodes.first?.contains("sink") == true, "\(nodes)")
    #expect(nodes.first?.contains("its option is still to come") == true, "\(nodes)")
  }

  @Test("a graph spanning several hosts makes Runtime.init throw multiHost")
  func multiHost() throws {
    let graph = try TestGraphs.graph(
      """
      hosts:
        one: {address: 10.0.0.1}
        two: {address: 10.0.0.2}
      nodes:
        source: {type: test-source, host: one}
        sink: {type: test-sink, input: source, host: two}
      """)
    let error = #expect(throws: RuntimeError.self) {
      _ = try Runtime(graph: graph, factory: TestFactory(bodies: [:]))
    }
    guard case .multiHost? = error else {
      Issue.record("expected multiHost, got \(String(describing: error))")
      return
    }
  }

  @Test(
    "a transform, fused or on its own thread, fed one by one or in batches: what it drops is gone, and counted",
    arguments: [(false, false), (false, true), (true, false), (true, true)])
  func transformCounts(fused: Bool, batched: Bool) throws {
    let graph = try TestGraphs.graph(
      """
      nodes:
        source: {type: test-source}
        half: {type: \(fused ? "test-every-other" : "test-every-other-stage"), input: source}
        sink: {type: test-sink, input: half}
      """)
    let recorder = Recorder()
    let runtime = try Runtime(
      graph: graph,
      factory: TestFactory(bodies: [
        "source": { CountingSource(count: 1000, bytes: 32, batched: batched) },
        "half": { EveryOtherTransform() },
        "sink": { RecordingSink(recorder: recorder) },
      ]))
    let fusable = TestFactory(bodies: [:])
    #expect(
      Plan.fusedEdges(graph, isFusable: { fusable.isFusable($0) }, touchesPayload: { _ in false }).map(\.to)
        == (fused ? ["half"] : []))
    runtime.start()
    guard expectFinishes(runtime) else { return }
    #expect(runtime.failures.isEmpty)

    let frames = recorder.all
    #expect(dataIndices(frames) == Array(stride(from: 0, to: 1000, by: 2)))
    #expect(frames.filter { $0.kind == .data }.allSatisfy { $0.meta.name == "kept_\($0.meta.frame)" })
    #expect(frames.first?.kind == .seriesStart && frames.last?.kind == .seriesEnd)
    let nodes = Dictionary(uniqueKeysWithValues: runtime.metrics.snapshot().nodes.map { ($0.node, $0) })
    #expect(nodes["source"]?.framesOut == 1002)
    #expect(nodes["source"]?.bytesOut == 32_000)
    #expect(nodes["half"]?.framesIn == 1002)
    #expect(nodes["half"]?.bytesIn == 32_000)
    #expect(nodes["half"]?.framesOut == 502)
    #expect(nodes["half"]?.bytesOut == 16_000)
    #expect(nodes["sink"]?.framesIn == 502)
    let into = runtime.metrics.edge(from: "source", to: "half")?.snapshot()
    #expect(into?.offered == 1000)
    #expect(into?.delivered == 1002)
    #expect(into?.deliveredData == 1000)
    #expect(into?.deliveredBytes == 32_000)
    #expect(into?.queuedFrames == 0)
    let out = runtime.metrics.edge(from: "half", to: "sink")?.snapshot()
    #expect(out?.offered == 500)
    #expect(out?.delivered == 502)
    #expect(out?.totalDropped == 0)
  }

  @Test("metrics: node and edge counters agree with what was sent")
  func metricsAreConsistent() throws {
    let graph = try TestGraphs.graph(
      """
      nodes:
        source: {type: test-source}
        relay: {type: test-relay, input: source}
        all: {type: test-sink, input: relay}
        sampled:
          type: test-sink
          input: {from: relay, sample: {every: 10}}
      """)
    let all = Recorder()
    let sampled = Recorder()
    let runtime = try Runtime(
      graph: graph,
      factory: TestFactory(bodies: [
        "source": { CountingSource(count: 100, bytes: 32) },
        "relay": { RelayStage() },
        "all": { RecordingSink(recorder: all) },
        "sampled": { RecordingSink(recorder: sampled) },
      ]))
    runtime.start()
    guard expectFinishes(runtime) else { return }
    #expect(runtime.failures.isEmpty)

    let metrics = runtime.metrics
    let nodes = Dictionary(uniqueKeysWithValues: metrics.snapshot().nodes.map { ($0.node, $0) })
    #expect(nodes.count == 4)
    #expect(nodes["source"]?.type == "test-source")
    #expect(nodes["source"]?.framesIn == 0)
    #expect(nodes["source"]?.framesOut == 102)
    #expect(nodes["source"]?.bytesOut == 3200)
    #expect(nodes["relay"]?.framesIn == 102)
    #expect(nodes["relay"]?.bytesIn == 3200)
    #expect(nodes["relay"]?.framesOut == 102)
    #expect(nodes["relay"]?.bytesOut == 3200)
    #expect(nodes["all"]?.framesIn == 102)
    #expect(nodes["all"]?.bytesIn == 3200)
    #expect(nodes["all"]?.framesOut == 0)
    #expect(nodes["sampled"]?.framesIn == 12)
    #expect(nodes["sampled"]?.bytesIn == 320)
    #expect(nodes.values.allSatisfy { $0.errors == 0 })
    #expect(all.count == 102)
    #expect(dataIndices(sampled.all) == Array(stride(from: 0, to: 100, by: 10)))

    let edges = metrics.snapshot().edges
    #expect(edges.count == 3)
    for edge in edges {
      #expect(edge.offered == 100, "\(edge.from) -> \(edge.to)")
      #expect(edge.queuedFrames == 0)
      #expect(edge.queuedBytes == 0)
      // What a sink read is what its edge delivered.
      #expect(edge.delivered == nodes[edge.to]?.framesIn, "\(edge.from) -> \(edge.to)")
      #expect(edge.deliveredBytes == nodes[edge.to]?.bytesIn, "\(edge.from) -> \(edge.to)")
    }
    let thinned = metrics.edge(from: "relay", to: "sampled")
    #expect(thinned?.dropped(.sample) == 90)
    #expect(thinned?.delivered.load(ordering: .relaxed) == 12)
    #expect(metrics.edge(from: "source", to: "relay")?.snapshot().totalDropped == 0)
    #expect(metrics.node("nobody") == nil)
  }
}

/// A sink that never reads: it waits until the run is stopping (bounded) and returns.
struct NeverReadingSink: StageBody {
  mutating func run(_ context: StageContext) throws {
    let deadline = Date(timeIntervalSinceNow: 20)
    while !context.isStopping, Date() < deadline { Thread.sleep(forTimeInterval: 0.002) }
  }
}

/// Waits until its source has sent everything, takes one frame, then waits for the
/// run to stop and reports whether `receive` still returned a frame.
struct HoldingSink: StageBody {
  let sent: Gate
  let tookOne: Gate
  let afterAbort: Box<Bool?>

  mutating func run(_ context: StageContext) throws {
    guard sent.wait(seconds: 5), context.receive() != nil else { return }
    tookOne.open()
    let deadline = Date(timeIntervalSinceNow: 20)
    while !context.isStopping, Date() < deadline { Thread.sleep(forTimeInterval: 0.002) }
    afterAbort.set(context.receive() != nil)
  }
}

/// Refuses the nodes named in `refusals`, with their reasons.
struct RefusingFactory: StageFactory {
  let runnableTypes: Set<String> = ["test-source", "test-sink"]
  let refusals: [String: String]

  func unsupportedReason(for node: Node) -> String? { refusals[node.name] }

  func makeBody(for node: Node, in graph: Graph) throws -> any StageBody {
    throw TestStageError.noBody(node.name)
  }
}
