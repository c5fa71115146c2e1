import ArgumentParser
import Dispatch
import Foundation
import HidraGraph
import HidraNodes
import HidraRuntime
import Synchronization

struct Run: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run a graph until its sources finish or it is stopped.",
    discussion: """
      The graph is validated first; an invalid graph does not start. Each node runs as a stage on \
      its own thread (cheap nodes may run fused on their producer's; see `hidra-run plan`). While running, one line per interval goes to stderr (a live table when stderr \
      is a terminal); at the end a summary lists every node and edge.

      Ctrl-C (SIGINT) or SIGTERM drains: sources stop, frames already queued on guaranteed edges \
      are still delivered, then the stages exit. A second signal exits at once and the summary says \
      what was left in each edge.

      Exit status: 0 the run finished cleanly, 1 the graph is invalid or a stage failed, 2 usage \
      or I/O error, 3 the run was aborted by a second signal.
      """)

  @Argument(help: "The graph file.")
  var file: String

  @Option(help: "Stop (draining) after this long, e.g. 10s or 2min.")
  var duration: String?

  @Option(help: "Progress interval, e.g. 1s; 0s for none.")
  var interval: String = "1s"

  func run() throws {
    guard let progressSeconds = Units.parseDuration(interval) else {
      throw ValidationError("--interval expects \(Units.durationForm)")
    }
    let limit = try duration.map { text -> Double in
      guard let seconds = Units.parseDuration(text) else {
        throw ValidationError("--duration expects \(Units.durationForm)")
      }
      return seconds
    }
    let graph = try requireValidGraph(file)
    let runtime: Runtime
    do {
      runtime = try Runtime(graph: graph, factory: NodeRuntime())
    } catch {
      printError("hidra-run: cannot run \(file): \(error)")
      throw Exit.invalid
    }
    let signals = SignalHandler(runtime: runtime)
    let started = monotonicNanos()
    Log.info("running graph '\(graph.name)': \(graph.nodes.count) stages, \(graph.edges.count) edges")
    runtime.start()
    let terminal = isatty(2) == 1
    var previous = runtime.metrics.snapshot()
    var drawnLines = 0
    let step = UInt64((progressSeconds > 0 ? progressSeconds : 0.25) * 1e9)
    while !runtime.wait(timeoutNanos: step) {
      let elapsed = Double(monotonicNanos() - started) / 1e9
      if let limit, elapsed >= limit, !signals.stopping { runtime.requestStop() }
      guard progressSeconds > 0 else { continue }
      let current = runtime.metrics.snapshot()
      if terminal {
        let lines = Summary.table(previous, current, elapsed: elapsed)
        var text = drawnLines > 0 ? "\u{1B}[\(drawnLines)A\u{1B}[J" : ""
        text += lines.joined(separator: "\n")
        Log.write(text)
        drawnLines = lines.count
      } else {
        Log.write(Summary.line(previous, current, elapsed: elapsed))
      }
      previous = current
    }
    signals.cancel()
    // Forwards closed their sockets with a linger: let ZeroMQ send what it holds.
    NodeRuntime.finish()
    let elapsed = Double(monotonicNanos() - started) / 1e9
    Log.write(Summary.final(runtime.metrics.snapshot(), graph: graph, elapsed: elapsed))
    if runtime.isAborted && runtime.failures.isEmpty {
      Log.info("aborted: frames were left in edges (see 'left' above)")
      throw ExitCode(3)
    }
    if !runtime.failures.isEmpty { throw Exit.invalid }
  }
}

/// SIGINT/SIGTERM: the first drains, the second aborts.
/// Owned by the main thread; the handlers run on a Dispatch queue and share only
/// the counter and the (thread-safe) runtime.
final class SignalHandler {
  private final class Counter: Sendable { let value = Atomic<Int>(0) }
  private var sources: [any DispatchSourceSignal] = []
  private let counter = Counter()

  init(runtime: Runtime) {
    let counter = self.counter
    for number in [SIGINT, SIGTERM] {
      signal(number, SIG_IGN)
      let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
      source.setEventHandler {
        if counter.value.add(1, ordering: .relaxed).newValue == 1 {
          Log.info("draining: sources stop, queued frames are delivered (signal again to exit at once)")
          runtime.requestStop()
        } else {
          Log.info("exiting at once")
          runtime.abort()
        }
      }
      source.resume()
      sources.append(source)
    }
  }

  var stopping: Bool { counter.value.load(ordering: .relaxed) > 0 }

  func cancel() {
    for source in sources { source.cancel() }
  }
}
