// `hop`: what one edge costs per frame, with nothing made or read.
//
// raw (baseline): libzmq PUSH -> PULL over inproc between two threads, sending
// empty messages (held inside the message, no allocation): libzmq's own cost per
// message. Hidra: `premade -> count`, where `premade` sends frames that share one
// premade payload, so nothing is allocated for the bytes and nothing fills them:
// the runtime's own cost per frame (making the frame, the edge's queue and lock,
// the hand-over, dropping the frame). The ratio is how far the runtime's
// per-frame path is from libzmq's; it bounds what any graph of small frames can
// reach (the 4 KiB rows of `throughput`).

import Foundation
import HidraGraph
import HidraRuntime
import ZeroMQ

func rawEmptyMessages(_ count: Int) -> Moved {
  var received = 0
  let (seconds, cpuSeconds) = rawPushPull(
    frames: count, highWaterMark: 512, make: { _ in Message() }, receive: { _ in received += 1 })
  precondition(received == count, "raw libzmq lost messages")
  return Moved(frames: count, bytes: 0, seconds: seconds, cpuSeconds: cpuSeconds)
}

func benchHop() {
  let rounds = BenchOptions.rounds(default: 5)
  let frames = BenchOptions.quick ? 200_000 : 1_000_000
  let payloads = premadePayloads(size: 4096, count: 1)
  let yaml = """
    graph: bench-hop
    nodes:
      src:
        type: premade
        count: \(frames)
      sink:
        type: count
        input: src
    """
  print(
    "hop: one edge, nothing made or read: premade -> count vs libzmq sending empty messages (best of \(rounds))"
  )
  var raw: [Moved] = []
  var hidra: [Moved] = []
  for _ in 0..<rounds {
    raw.append(rawEmptyMessages(frames))
    let run = runGraph(yaml, premade: payloads, tickNanos: 10_000_000)
    precondition(run.received["sink"]?.frames == frames, "the hop graph lost frames")
    hidra.append(
      Moved(frames: frames, bytes: frames * 4096, seconds: run.seconds, cpuSeconds: run.cpuSeconds))
    if BenchOptions.verbose {
      print(
        "  raw \(fixed(raw.last!.framesPerSecond, 0)) frames/s \(fixed(raw.last!.cpuMicrosPerFrame)) us/frame, "
          + "hidra \(fixed(hidra.last!.framesPerSecond, 0)) frames/s \(fixed(hidra.last!.cpuMicrosPerFrame)) us/frame"
      )
    }
  }
  let rawRate = best(raw.map(\.framesPerSecond))
  let hidraRate = best(hidra.map(\.framesPerSecond))
  let rawCPU = raw.map(\.cpuMicrosPerFrame).min() ?? 0
  let hidraCPU = hidra.map(\.cpuMicrosPerFrame).min() ?? 0
  printTable([
    [
      "frames", "raw frames/s", "hidra frames/s", "hidra/raw", "raw us/frame", "hidra us/frame",
      "CPU hidra/raw",
    ],
    [
      String(frames), fixed(rawRate, 0), fixed(hidraRate, 0), fixed(hidraRate / rawRate), fixed(rawCPU),
      fixed(hidraCPU), fixed(hidraCPU / rawCPU),
    ],
  ])
  print("  no target of its own: it is the floor under the 4 KiB rows of throughput")
}

// `handover`: frames through a full 4-frame guaranteed edge, where every frame is
// a hand-over between the two threads, on an idle machine and next to busy
// processes (children of this executable that only spin, one more than there are
// cores). Baseline: the same run on the idle machine. A waiter that yields its
// core while it waits for a signal can lose it for a whole time slice to a busy
// process; this is the case that shows it (an open problem, bench/README.md).

/// Sends `count` small data frames through a guaranteed edge of 4 frames from one
/// thread to another; returns seconds.
func handoverSeconds(_ count: Int) -> Double {
  let inbox = Inbox()
  let edge = inbox.addEdge(
    qos: EdgeQoS(delivery: .guaranteed, bufferFrames: 4), counters: EdgeCounters(from: "a", to: "b"))
  let payload = Payload(count: 16) { $0.initializeMemory(as: UInt8.self, repeating: 0) }
  let start = monotonicNanos()
  let producer = Thread {
    for index in 0..<count {
      edge.send(Frame(kind: .data, meta: FrameMeta(id: UInt64(index)), parts: [payload]))
    }
    edge.close()
  }
  producer.start()
  var frames: [Frame] = []
  var received = 0
  while inbox.receive(into: &frames) {
    received += frames.count
    frames.removeAll(keepingCapacity: true)
  }
  precondition(received == count, "the hand-over benchmark lost frames")
  return Double(monotonicNanos() - start) / 1e9
}

/// Child processes that spin until killed.
func startBusyProcesses(_ count: Int) -> [Process] {
  (0..<count).compactMap { _ in
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/proc/self/exe")
    process.arguments = ["burn"]
    process.standardOutput = FileHandle.nullDevice
    return (try? process.run()).map { process }
  }
}

func benchHandover() {
  let rounds = BenchOptions.rounds(default: 3)
  let frames = BenchOptions.quick ? 2_000 : 10_000
  let busy = ProcessInfo.processInfo.activeProcessorCount + 1
  print(
    "handover: \(frames) frames through a full 4-frame guaranteed edge, idle vs next to \(busy) busy processes"
  )
  var idle: [Double] = []
  var loaded: [Double] = []
  for _ in 0..<rounds {
    idle.append(handoverSeconds(frames))
    let burners = startBusyProcesses(busy)
    Thread.sleep(forTimeInterval: 0.2)
    loaded.append(handoverSeconds(frames))
    for process in burners { process.terminate() }
    for process in burners { process.waitUntilExit() }
  }
  let bestIdle = idle.min() ?? 0
  let worstLoaded = loaded.max() ?? 0
  printTable([
    ["frames", "idle s (best)", "loaded s (worst)", "loaded s (all)", "loaded/idle"],
    [
      String(frames), fixed(bestIdle, 3), fixed(worstLoaded, 3),
      loaded.map { fixed($0, 2) }.joined(separator: " "),
      fixed(worstLoaded / bestIdle, 1),
    ],
  ])
  print("  loaded/idle: how much longer the worst loaded run took (an open problem: see bench/README.md)")
}
