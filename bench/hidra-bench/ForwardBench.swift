// `forward`: frames leaving Hidra for a consumer in another process, over TCP on
// 127.0.0.1, against raw libzmq moving the same frames between two processes.
//
// Baseline (raw): this process binds a PUSH socket and sends messages made the
// way the throughput baseline makes them (zmq_msg_init_size, then
// GeneratedContent.fill); a child process (`hidra-bench consume raw`) receives
// them on a PULL socket and counts them.
//
// Hidra: generate -> checksum(xxh3) -> forward(native, push, listen on
// 127.0.0.1), consumed by a child process (`hidra-bench consume hidra`): a
// HidraReceiver (pattern .pull) that acknowledges every frame. A third column
// runs the same graph with `acknowledge: false` (a plain PUSH socket), read by a
// PULL socket that decodes every frame with WireAssembler (`consume wire`).
//
// Each measurement runs from just before the producer starts (the graph's
// Runtime.start(), or the raw socket's bind) to the moment the consumer has the
// last frame (CLOCK_MONOTONIC, the same clock in both processes). The consumer
// is started first and connects as soon as the port listens, so neither side
// waits for ZeroMQ's reconnection timer.

import Foundation
import HidraGraph
import HidraNodes
import HidraRuntime
import ZeroMQ

/// One measurement of the forward benchmark: seconds, and what the consumer got.
struct ForwardRun {
  var seconds: Double
  /// CPU time of both processes: this one during the measurement, and the consumer's.
  var cpuSeconds: Double
  var result: ConsumerResult
}

/// The raw baseline: `frames` messages of `size` bytes from this process to a
/// child PULL consumer over TCP.
func rawTCP(size: Int, frames: Int, content: GeneratedContent) -> ForwardRun {
  let port = freePort()
  let endpoint = "tcp://127.0.0.1:\(port)"
  let consumer = ConsumerProcess(mode: "raw", endpoint: endpoint, count: frames)
  let context = try! ZMQContext(ioThreads: 1)
  let push = try! Socket(.push, context: context)
  // As much as a default guaranteed edge holds (1024 frames or 1 GiB), half on
  // each side; the consumer sets the other half.
  try! push.setOption(.sendHighWaterMark, Int32(max(1, min(1024, (1 << 30) / size) / 2)))
  try! push.setOption(.linger, 0)
  let (start, cpu) = (monotonicNanos(), processCPUSeconds())
  try! push.bind(endpoint)
  for frame in 0..<frames {
    var message = Message(uninitializedCount: size)
    message.withUnsafeMutableBytes { content.fill($0, series: 1, frame: frame) }
    try! push.send(message)
  }
  guard let result = consumer.result(within: 120) else { fatalError("the raw consumer failed") }
  let cpuSeconds = processCPUSeconds() - cpu + result.cpuSeconds
  push.close()
  precondition(
    result.frames == frames && result.bytes == frames * size,
    "raw TCP lost frames: \(result.frames) of \(frames), \(result.bytes) bytes")
  return ForwardRun(seconds: Double(result.end - start) / 1e9, cpuSeconds: cpuSeconds, result: result)
}

/// generate -> checksum -> forward to a child consumer; `acknowledge` picks the
/// forward's protocol (and the consumer's mode).
func hidraForward(size: Int, frames: Int, acknowledge: Bool) -> ForwardRun {
  let port = freePort()
  let endpoint = "tcp://127.0.0.1:\(port)"
  let consumer = ConsumerProcess(mode: acknowledge ? "hidra" : "wire", endpoint: endpoint, count: frames)
  let (runtime, _, _) = prepareGraph(
    """
    graph: bench-forward
    nodes:
      gen:
        type: generate
        size: \(yamlSize(size))
        count: \(frames)
      sum:
        type: checksum
        input: gen
        algorithms: [xxh3]
      out:
        type: forward
        input: sum
        pattern: push
        acknowledge: \(acknowledge)
        listen: \(endpoint)
    """)
  let (start, cpu) = (monotonicNanos(), processCPUSeconds())
  runtime.start()
  guard let result = consumer.result(within: 120) else {
    runtime.abort()
    fatalError("the Hidra consumer failed")
  }
  // With acknowledgements the forward ends once the last one is in; without,
  // once it handed the last frame to ZeroMQ.
  if !runtime.wait(timeoutNanos: 60_000_000_000) {
    runtime.abort()
    fatalError("the forward graph did not end after its consumer had every frame")
  }
  let cpuSeconds = processCPUSeconds() - cpu + result.cpuSeconds
  precondition(runtime.failures.isEmpty, "the forward graph failed: \(runtime.failures)")
  precondition(
    result.frames == frames && result.bytes == frames * size && result.distinct == frames
      && result.duplicates == 0 && result.errors == "-",
    "the Hidra consumer got \(result.frames) of \(frames) frames (\(result.distinct) distinct, "
      + "\(result.duplicates) duplicates, errors \(result.errors))")
  if acknowledge {
    let out = runtime.metrics.node("out")!.framesOut.load(ordering: .relaxed)
    precondition(out == frames, "the forward confirmed \(out) of \(frames) frames")
  }
  return ForwardRun(seconds: Double(result.end - start) / 1e9, cpuSeconds: cpuSeconds, result: result)
}

func benchForward() {
  let rounds = BenchOptions.rounds(default: 5)
  let volume = BenchOptions.quick ? 512 << 20 : 2 << 30
  print(
    "forward: generate -> checksum -> forward(push, tcp 127.0.0.1) -> consumer process "
      + "vs raw libzmq PUSH -> PULL between two processes (best of \(rounds) interleaved round\(rounds == 1 ? "" : "s"))"
  )
  var rows = [
    [
      "size", "frames", "raw frames/s", "raw GB/s", "acked frames/s", "acked GB/s", "acked/raw", "target",
      "met",
      "no-ack frames/s", "no-ack/raw", "raw CPU us/frame", "acked CPU", "CPU acked/raw", "no-ack CPU",
      "CPU no-ack/raw",
    ]
  ]
  for size in BenchOptions.selected([1 << 20, 4 << 20]) {
    let frames = volume / size
    let content = GeneratedContent(seed: 0, size: size)
    var (raw, acked, plain) = ([ForwardRun](), [ForwardRun](), [ForwardRun]())
    for _ in 0..<rounds {
      if BenchOptions.measures("raw") { raw.append(rawTCP(size: size, frames: frames, content: content)) }
      if BenchOptions.measures("acked") {
        acked.append(hidraForward(size: size, frames: frames, acknowledge: true))
      }
      if BenchOptions.measures("noack") {
        plain.append(hidraForward(size: size, frames: frames, acknowledge: false))
      }
      if BenchOptions.verbose {
        let rates = [("raw", raw), ("acked", acked), ("no-ack", plain)].compactMap { name, runs in
          runs.last.map {
            "\(name) \(fixed(Double(frames) / $0.seconds, 0))/s \(fixed($0.cpuSeconds / Double(frames) * 1e6, 0)) us/frame"
          }
        }
        print("  \(sizeName(size)): " + rates.joined(separator: ", "))
      }
    }
    let rate = { (runs: [ForwardRun]) in best(runs.map { Double(frames) / $0.seconds }) }
    // CPU per frame: the least of the rounds (contention only ever adds).
    let cpu = { (runs: [ForwardRun]) in (runs.map(\.cpuSeconds).min() ?? 0) / Double(frames) * 1e6 }
    let (rawRate, ackedRate, plainRate) = (rate(raw), rate(acked), rate(plain))
    let ratio = ackedRate / rawRate
    rows.append([
      sizeName(size), String(frames), fixed(rawRate, 0), fixed(rawRate * Double(size) / 1e9),
      fixed(ackedRate, 0), fixed(ackedRate * Double(size) / 1e9), fixed(ratio), ">= 0.8",
      raw.isEmpty || acked.isEmpty ? "-" : ratio >= 0.8 ? "yes" : "NO", fixed(plainRate, 0),
      fixed(plainRate / rawRate), fixed(cpu(raw), 0), fixed(cpu(acked), 0), fixed(cpu(acked) / cpu(raw)),
      fixed(cpu(plain), 0), fixed(cpu(plain) / cpu(raw)),
    ])
  }
  printTable(rows)
  print("  acked: the consumer is a HidraReceiver acknowledging every frame (credit 16, the default)")
  print(
    "  no-ack: the same graph with 'acknowledge: false' (plain PUSH), read by a PULL socket + WireAssembler")
  print("  time: from the producer's start to the consumer's last frame; every frame checked received once")
  print(
    "  CPU: both processes, all threads, per frame (least of the rounds); Hidra's includes generate and checksum"
  )
}
