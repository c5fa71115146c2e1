import Foundation
import HidraGraph
import HidraRuntime
import Synchronization
import Testing

// Test doubles and helpers shared by the edge-level and runtime-level tests.
//
// Nothing here may hang a test: every wait takes a bound, and helpers that hand
// work to another thread report (rather than wait forever) when it does not finish.

// MARK: - Frames

/// A data frame whose payload starts with `index` (UInt64, little endian).
func dataFrame(_ index: Int, series: Int = 1, bytes: Int = 16) -> Frame {
  let payload = Payload(count: bytes) { buffer in
    buffer.initializeMemory(as: UInt8.self, repeating: 0)
    if bytes >= 8 {
      buffer.storeBytes(of: UInt64(index).littleEndian, toByteOffset: 0, as: UInt64.self)
    }
  }
  return Frame(
    kind: .data, meta: FrameMeta(id: UInt64(index) + 1, series: series, frame: index, name: "frame_\(index)"),
    parts: [payload])
}

/// The index stamped into a data frame's payload by `dataFrame`; nil for control frames.
func stampedIndex(_ frame: Frame) -> Int? {
  guard frame.kind == .data, let part = frame.parts.first, part.count >= 8 else { return nil }
  return Int(UInt64(littleEndian: part.bytes.loadUnaligned(as: UInt64.self)))
}

/// The stamped indices of the data frames among `frames`, in order.
func dataIndices(_ frames: [Frame]) -> [Int] { frames.compactMap(stampedIndex) }

/// A compact picture of a frame sequence, e.g. `["start1", "7", "8", "end1"]`.
func describe(_ frames: [Frame]) -> [String] {
  frames.map { frame in
    switch frame.kind {
    case .seriesStart: return "start\(frame.meta.series)"
    case .seriesEnd: return "end\(frame.meta.series)"
    case .data: return stampedIndex(frame).map(String.init) ?? "data?"
    }
  }
}

// MARK: - Threads and synchronisation

/// A plain OS thread (not a cooperative-pool task, which must never block) that
/// can be joined with a bound.
final class Worker: Sendable {
  private let done = DispatchSemaphore(value: 0)

  init(_ body: @escaping @Sendable () -> Void) {
    let done = self.done
    let thread = Thread {
      body()
      done.signal()
    }
    thread.stackSize = 1 << 20
    thread.start()
  }

  /// True when the thread finished within `seconds`.
  func join(seconds: Double) -> Bool {
    done.wait(timeout: .now() + seconds) == .success
  }
}

/// A one-shot gate: closed until `open()`, then open for good.
final class Gate: @unchecked Sendable {
  // @unchecked Sendable: `isOpenValue` is guarded by `condition`.
  private let condition = NSCondition()
  private var isOpenValue = false

  func open() {
    condition.lock()
    isOpenValue = true
    condition.broadcast()
    condition.unlock()
  }

  var isOpen: Bool {
    condition.lock()
    defer { condition.unlock() }
    return isOpenValue
  }

  /// Waits up to `seconds` for the gate to open; true when it is open.
  @discardableResult
  func wait(seconds: Double) -> Bool {
    let deadline = Date(timeIntervalSinceNow: seconds)
    condition.lock()
    defer { condition.unlock() }
    while !isOpenValue {
      if !condition.wait(until: deadline) { return isOpenValue }
    }
    return true
  }
}

/// A value written by one thread and read by another.
final class Box<Value: Sendable>: Sendable {
  private let value: Mutex<Value>
  init(_ initial: Value) { value = Mutex(initial) }
  func set(_ newValue: Value) { value.withLock { $0 = newValue } }
  func get() -> Value { value.withLock { $0 } }
}

/// A counter written by one thread and read by others.
final class Counter: Sendable {
  private let atomic = Atomic<Int>(0)
  var value: Int { atomic.load(ordering: .acquiring) }
  func increment() { atomic.add(1, ordering: .releasing) }
}

/// Frames seen by a sink, in order.
final class Recorder: Sendable {
  private let frames = Mutex<[Frame]>([])
  func append(_ frame: Frame) { frames.withLock { $0.append(frame) } }
  var all: [Frame] { frames.withLock { $0 } }
  var count: Int { frames.withLock { $0.count } }
}

/// Polls `condition` every millisecond until it holds or `seconds` pass.
func eventually(seconds: Double = 5, _ condition: () -> Bool) -> Bool {
  let deadline = Date(timeIntervalSinceNow: seconds)
  while !condition() {
    if Date() >= deadline { return false }
    Thread.sleep(forTimeInterval: 0.001)
  }
  return true
}

// MARK: - Edge helpers

/// Every frame of an inbox until its input is over (all edges closed and empty).
/// Records an issue, and returns what it has, when the input does not end within `seconds`.
func drain(
  _ inbox: Inbox, seconds: Double = 5, max: Int = 64,
  sourceLocation: Testing.SourceLocation = #_sourceLocation
) -> [Frame] {
  let deadline = monotonicNanos() + UInt64(seconds * 1e9)
  var frames: [Frame] = []
  while true {
    let now = monotonicNanos()
    guard now < deadline, let batch = inbox.receive(timeoutNanos: deadline - now, max: max) else {
      if now >= deadline {
        Issue.record("the inbox's input did not end within \(seconds) s", sourceLocation: sourceLocation)
      }
      return frames
    }
    if batch.isEmpty {
      Issue.record("the inbox's input did not end within \(seconds) s", sourceLocation: sourceLocation)
      return frames
    }
    frames.append(contentsOf: batch)
  }
}

/// Runs `body` on another thread and waits up to `seconds` for it. When it does
/// not return in time (a send or receive waited where it should not), records an
/// issue, aborts `inboxes` so the thread can end, and returns nil.
///
/// Sends on guaranteed edges and `Inbox.receive(into:)` wait without a bound by
/// design; tests make them through this so that a broken queue fails the test
/// instead of hanging it.
func within<T: Sendable>(
  _ seconds: Double = 5, aborting inboxes: [Inbox], sourceLocation: Testing.SourceLocation = #_sourceLocation,
  _ body: @escaping @Sendable () -> T
) -> T? {
  let result = Box<T?>(nil)
  let worker = Worker { result.set(body()) }
  if worker.join(seconds: seconds) { return result.get() }
  Issue.record("a send or receive did not return within \(seconds) s", sourceLocation: sourceLocation)
  for inbox in inboxes { inbox.abort() }
  _ = worker.join(seconds: 5)
  return nil
}

/// Sends `frames` in order on another thread, with a bound (see `within`).
func sendAll(
  _ edge: EdgeQueue, _ frames: [Frame], inbox: Inbox, seconds: Double = 5,
  sourceLocation: Testing.SourceLocation = #_sourceLocation
) -> [SendResult] {
  within(seconds, aborting: [inbox], sourceLocation: sourceLocation) { frames.map { edge.send($0) } } ?? []
}

/// Sends one frame on another thread, with a bound (see `within`); nil when it did not return.
func sendWithin(
  _ seconds: Double, _ edge: EdgeQueue, _ frame: Frame, inbox: Inbox,
  sourceLocation: Testing.SourceLocation = #_sourceLocation
) -> SendResult? {
  within(seconds, aborting: [inbox], sourceLocation: sourceLocation) { edge.send(frame) }
}

/// `Inbox.receive(into:max:)` on another thread, with a bound (see `within`):
/// whether the input goes on, and the frames taken; nil when it did not return.
func receiveWithin(
  _ inbox: Inbox, max: Int = 64, maxBytes: Int = 1 << 20, seconds: Double = 5,
  sourceLocation: Testing.SourceLocation = #_sourceLocation
) -> (more: Bool, frames: [Frame])? {
  within(seconds, aborting: [inbox], sourceLocation: sourceLocation) {
    var frames: [Frame] = []
    let more = inbox.receive(into: &frames, max: max, maxBytes: maxBytes)
    return (more, frames)
  }
}

// MARK: - Graphs

/// Node types for runtime tests; their bodies come from `TestFactory`.
enum TestGraphs {
  static let catalog = NodeCatalog([
    NodeTypeSpec(name: "test-source", kind: .source, summary: "a test source", options: []),
    NodeTypeSpec(name: "test-relay", kind: .filter, summary: "passes every frame on", options: []),
    NodeTypeSpec(
      name: "test-every-other", kind: .filter, summary: "drops odd data frames (fusable)", options: [],
      fusable: { _ in true }),
    NodeTypeSpec(
      name: "test-every-other-stage", kind: .filter, summary: "drops odd data frames (own stage)", options: []
    ),
    NodeTypeSpec(name: "test-sink", kind: .forward, summary: "a test sink", options: []),
    NodeTypeSpec(name: "test-unrunnable", kind: .forward, summary: "no factory runs it", options: []),
  ])

  /// A checked graph from YAML; fails the test on any validation error.
  static func graph(_ yaml: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws -> Graph
  {
    let result = GraphValidator(catalog: catalog).validate(text: yaml, file: "test.yaml")
    #expect(
      !result.diagnostics.hasErrors, "\(result.diagnostics.errors.map(\.description))",
      sourceLocation: sourceLocation)
    return try #require(result.graph, sourceLocation: sourceLocation)
  }
}

enum TestStageError: Error, Equatable {
  case noBody(String)
  case boom
}

/// Makes each node's body from a closure chosen by node name.
struct TestFactory: StageFactory {
  var runnableTypes: Set<String> = [
    "test-source", "test-relay", "test-sink", "test-every-other", "test-every-other-stage",
  ]
  var bodies: [String: @Sendable () -> any StageBody]
  /// The source nodes that say they can wait (`StageFactory.canWait`).
  var waiting: Set<String> = []

  func canWait(_ node: Node) -> Bool { waiting.contains(node.name) }
  var catalog: NodeCatalog? { TestGraphs.catalog }

  func makeBody(for node: Node, in graph: Graph) throws -> any StageBody {
    guard let make = bodies[node.name] else { throw TestStageError.noBody(node.name) }
    return make()
  }
}

// MARK: - Test stages

/// Emits a series start, `count` data frames and the series end, then opens
/// `finished` and returns. `batched`, it emits them in `FrameBatch`es.
struct CountingSource: StageBody {
  let count: Int
  var bytes = 16
  var finished: Gate?
  /// Data frames for which `emit` reported success (counted per batch when batched).
  var emitted: Counter?
  var batched = false

  mutating func run(_ context: StageContext) throws {
    guard batched else {
      context.emit(.seriesStart(1))
      for index in 0..<count {
        guard context.emit(dataFrame(index, bytes: bytes)) else { break }
        emitted?.increment()
      }
      context.emit(.seriesEnd(1, frames: count))
      finished?.open()
      return
    }
    var batch = FrameBatch()
    batch.append(.seriesStart(1))
    for index in 0..<count {
      batch.append(dataFrame(index, bytes: bytes))
      if batch.isFull {
        let data = batch.count
        guard context.emit(&batch) else { break }
        for _ in 0..<data { emitted?.increment() }
      }
    }
    batch.append(.seriesEnd(1, frames: count))
    context.emit(&batch)
    finished?.open()
  }
}

/// Drops every data frame whose number is odd; passes the rest, named `kept_N`.
struct EveryOtherTransform: FrameTransform {
  mutating func transform(_ frame: inout Frame, _ context: StageContext) -> Bool {
    guard frame.kind == .data else { return true }
    guard frame.meta.frame % 2 == 0 else { return false }
    frame.meta.name = "kept_\(frame.meta.frame)"
    return true
  }
}

/// Emits data frames until the run is stopping (or its output closes for good).
struct UntilStoppedSource: StageBody {
  /// Data frames `emit` accepted.
  let emitted: Counter
  /// Data frames `emit` refused (an edge closed).
  let refused: Counter
  /// Opened once `threshold` data frames were accepted.
  var reached: Gate?
  var threshold = 0
  var throwAfter: Int?

  mutating func run(_ context: StageContext) throws {
    context.emit(.seriesStart(1))
    var index = 0
    while !context.isStopping {
      if let throwAfter, index == throwAfter { throw TestStageError.boom }
      guard context.emit(dataFrame(index)) else {
        refused.increment()
        break
      }
      index += 1
      emitted.increment()
      if index == threshold { reached?.open() }
    }
    context.emit(.seriesEnd(1, frames: index))
  }
}

/// Records every frame it receives. With `stall`, first waits until `stall`
/// opens or the run is stopping (bounded, so a broken test cannot hang).
struct RecordingSink: StageBody {
  let recorder: Recorder
  var stall: Gate?
  /// Opened once the sink starts reading.
  var reading: Gate?

  mutating func run(_ context: StageContext) throws {
    if let stall {
      let deadline = Date(timeIntervalSinceNow: 20)
      while !stall.wait(seconds: 0.002), !context.isStopping, Date() < deadline {}
    }
    reading?.open()
    while let frame = context.receive() { recorder.append(frame) }
  }
}

/// Passes every frame on.
struct RelayStage: StageBody {
  mutating func run(_ context: StageContext) throws {
    while let frame = context.receive() { context.emit(frame) }
  }
}

/// Reads `after` frames, then throws.
struct ThrowingSink: StageBody {
  let after: Int

  mutating func run(_ context: StageContext) throws {
    var seen = 0
    while seen < after, context.receive() != nil { seen += 1 }
    throw TestStageError.boom
  }
}

/// Waits for `runtime` and fails the test if its stages have not all exited within
/// `seconds`; aborts it then, so no thread is left blocked.
func expectFinishes(
  _ runtime: Runtime, seconds: Double = 5, sourceLocation: Testing.SourceLocation = #_sourceLocation
) -> Bool {
  let finished = runtime.wait(timeoutNanos: UInt64(seconds * 1e9))
  #expect(finished, "the run did not finish within \(seconds) s", sourceLocation: sourceLocation)
  if !finished {
    runtime.abort()
    _ = runtime.wait(timeoutNanos: 5_000_000_000)
  }
  return finished
}
