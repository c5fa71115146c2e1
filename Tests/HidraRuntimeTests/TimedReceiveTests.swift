import Foundation
import HidraGraph
import HidraRuntime
import Testing

/// `StageContext.receive(waitingAtMost:)`: the receive for stages that serve
/// sockets between frames on their own thread.
@Suite("Timed receive")
struct TimedReceiveTests {
  /// Emits its frames only once `go` opens.
  struct GatedSource: StageBody {
    let go: Gate
    let count: Int

    mutating func run(_ context: StageContext) throws {
      guard go.wait(seconds: 10) else { return }
      var source = CountingSource(count: count)
      try source.run(context)
    }
  }

  /// Receives with a timeout until the input ends; opens `go` after its first
  /// empty wait, and records what it saw.
  struct TimedSink: StageBody {
    let go: Gate
    let timeout: Duration
    let recorder: Recorder
    let idleBeforeFirstFrame: Box<Int>
    let endings: Box<Int>

    mutating func run(_ context: StageContext) throws {
      var idle = 0
      let deadline = Date(timeIntervalSinceNow: 20)
      loop: while Date() < deadline {
        switch context.receive(waitingAtMost: timeout) {
        case .nothingYet:
          if recorder.count == 0 { idle += 1 }
          go.open()
        case .frame(let frame):
          if recorder.count == 0 { idleBeforeFirstFrame.set(idle) }
          recorder.append(frame)
        case .ended:
          break loop
        }
      }
      // The end is reported again, like receive() returning nil.
      if case .ended = context.receive(waitingAtMost: timeout) { endings.set(2) } else { endings.set(1) }
    }
  }

  func run(timeout: Duration) throws -> (Recorder, idle: Int, endings: Int, framesIn: Int?) {
    let graph = try TestGraphs.graph(
      """
      nodes:
        source: {type: test-source}
        sink: {type: test-sink, input: source}
      """)
    let go = Gate()
    let recorder = Recorder()
    let idle = Box(0)
    let endings = Box(0)
    let runtime = try Runtime(
      graph: graph,
      factory: TestFactory(bodies: [
        "source": { GatedSource(go: go, count: 10) },
        "sink": {
          TimedSink(
            go: go, timeout: timeout, recorder: recorder, idleBeforeFirstFrame: idle, endings: endings)
        },
      ]))
    runtime.start()
    _ = expectFinishes(runtime, seconds: 10)
    #expect(runtime.failures.isEmpty)
    return (recorder, idle.get(), endings.get(), runtime.metrics.node("sink")?.snapshot().framesIn)
  }

  @Test("an empty open input gives nothingYet, then every frame in order, then ended (and again)")
  func nothingYetThenFramesThenEnd() throws {
    let (recorder, idle, endings, framesIn) = try run(timeout: .milliseconds(2))
    #expect(idle >= 1, "the sink saw no empty wait before the source started")
    #expect(describe(recorder.all) == ["start1"] + (0..<10).map(String.init) + ["end1"])
    #expect(endings == 2)
    #expect(framesIn == 12, "every frame handed out is counted once")
  }

  @Test("a zero timeout only takes what is queued and never waits")
  func zeroTimeout() throws {
    let (recorder, idle, endings, framesIn) = try run(timeout: .zero)
    #expect(idle >= 1)
    #expect(describe(recorder.all) == ["start1"] + (0..<10).map(String.init) + ["end1"])
    #expect(endings == 2)
    #expect(framesIn == 12)
  }
}
