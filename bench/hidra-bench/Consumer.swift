// The external consumer of the `forward` and `directory` benchmarks: this same
// executable, run again as `hidra-bench consume MODE ENDPOINT COUNT` (a hidden
// command), so that what a forward sends crosses a process boundary over TCP the
// way it does to a real consumer.
//
// Modes:
//   hidra  HidraClient's HidraReceiver, pattern .pull, acknowledging every frame
//          (automatic acknowledgements), for a `push` forward.
//   wire   a plain PULL socket whose messages go through WireAssembler (what a
//          HidraReceiver decodes), for a `push` forward with `acknowledge: false`.
//   raw    a plain PULL socket that counts messages and bytes: the baseline.
//
// The child prints lines on stdout, which the parent reads:
//   ready                     initialised; it now waits until ENDPOINT listens
//   connected                 its TCP connection to ENDPOINT is established
//   done END FRAMES BYTES DISTINCT DUPLICATES ERRORS CPU
// END is CLOCK_MONOTONIC (shared by every process on the machine) when the
// COUNT-th data frame arrived; DISTINCT is how many different frame names it
// saw; ERRORS is `kind=count,...` or `-`; CPU is the seconds of CPU time the
// consumer process used from its connect to END.

import Foundation
import HidraClient
import HidraRuntime
import ZeroMQ

#if canImport(Glibc)
  import Glibc
#endif

/// Prints one line and flushes it at once: the parent waits for it.
private func tell(_ line: String) {
  print(line)
  fflush(nil)
}

/// The port of a `tcp://HOST:PORT` endpoint.
func endpointPort(_ endpoint: String) -> Int? {
  endpoint.split(separator: ":").last.flatMap { Int($0) }
}

/// Whether /proc/net/tcp lists a socket with `port` as its local port (`local`)
/// or remote port in TCP state `state` (hex, as the kernel prints it: 0A is
/// LISTEN, 01 ESTABLISHED).
func tcpSocketExists(port: Int, local: Bool, state: String) -> Bool {
  guard let table = readWholeFile("/proc/net/tcp") else { return false }
  let suffix = ":" + String(format: "%04X", port)
  for line in table.split(separator: "\n").dropFirst() {
    let fields = line.split(separator: " ")
    guard fields.count > 3, fields[3] == state else { continue }
    if fields[local ? 1 : 2].hasSuffix(suffix) { return true }
  }
  return false
}

/// The whole text of a file, read until its end: files in /proc report a size
/// of 0, and a reader that trusts the size gets only their first page.
func readWholeFile(_ path: String) -> String? {
  let fd = open(path, O_RDONLY | O_CLOEXEC)
  guard fd >= 0 else { return nil }
  defer { close(fd) }
  var bytes: [UInt8] = []
  var chunk = [UInt8](repeating: 0, count: 64 << 10)
  while true {
    let count = read(fd, &chunk, chunk.count)
    if count < 0 && errno == EINTR { continue }
    guard count > 0 else { break }
    bytes += chunk[..<count]
  }
  return String(decoding: bytes, as: UTF8.self)
}

/// Waits until `check` holds, looking every `interval` microseconds, for at most `seconds`.
func waitUntil(seconds: Double, every interval: UInt32 = 200, _ check: () -> Bool) -> Bool {
  let deadline = monotonicNanos() + UInt64(seconds * 1e9)
  while !check() {
    if monotonicNanos() > deadline { return false }
    usleep(interval)
  }
  return true
}

/// `hidra-bench consume MODE ENDPOINT COUNT`; returns the exit status.
func consumeCommand(_ arguments: [String]) -> Int32 {
  guard arguments.count == 3, ["hidra", "wire", "raw"].contains(arguments[0]),
    let port = endpointPort(arguments[1]), let count = Int(arguments[2]), count > 0
  else {
    FileHandle.standardError.write(
      Data("usage: hidra-bench consume hidra|wire|raw tcp://HOST:PORT COUNT\n".utf8))
    return 2
  }
  let (mode, endpoint) = (arguments[0], arguments[1])
  tell("ready")
  // Connect only once the producer listens: a connection refused makes ZeroMQ
  // wait 100-200 ms before it tries again, which would count against whichever
  // side met it.
  guard waitUntil(seconds: 60, { tcpSocketExists(port: port, local: true, state: "0A") }) else {
    tell("error: nothing listens on \(endpoint)")
    return 1
  }
  do {
    switch mode {
    case "hidra": return try consumeWithReceiver(endpoint, port: port, count: count)
    default: return try consumeWithPull(endpoint, port: port, count: count, decode: mode == "wire")
    }
  } catch {
    tell("error: \(error)")
    return 1
  }
}

/// Says `connected` once the TCP connection to `port` is up (or after 10 s).
private func tellConnected(port: Int) {
  _ = waitUntil(seconds: 10) { tcpSocketExists(port: port, local: false, state: "01") }
  tell("connected")
}

/// The summary line of a consumer that stopped after `frames` data frames.
private func tellDone(
  end: UInt64, frames: Int, bytes: Int, distinct: Int, duplicates: Int, errors: [String: Int], cpu: Double
) {
  let errorText =
    errors.isEmpty
    ? "-" : errors.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
  tell("done \(end) \(frames) \(bytes) \(distinct) \(duplicates) \(errorText) \(cpu)")
}

/// Mode `hidra`: a HidraReceiver that acknowledges each frame when it asks for
/// the next one (and the last when it closes).
private func consumeWithReceiver(_ endpoint: String, port: Int, count: Int) throws -> Int32 {
  let cpuStart = processCPUSeconds()
  let receiver = try HidraReceiver(connect: endpoint, pattern: .pull)
  tellConnected(port: port)
  var (frames, bytes) = (0, 0)
  var names = Set<String>()
  while frames < count {
    // A run that stalls for 30 s is broken: report what arrived.
    guard let frame = try receiver.receive(timeout: .seconds(30)) else { break }
    guard frame.kind == .data else { continue }
    frames += 1
    bytes += frame.byteCount
    names.insert(frame.meta.name)
  }
  let (end, cpu) = (monotonicNanos(), processCPUSeconds() - cpuStart)
  receiver.close()
  tellDone(
    end: end, frames: frames, bytes: bytes, distinct: names.count, duplicates: receiver.duplicates,
    errors: receiver.errors, cpu: cpu)
  return frames == count ? 0 : 1
}

/// Modes `raw` and `wire`: a PULL socket. `raw` counts messages; `wire`
/// reassembles frames with WireAssembler, as a HidraReceiver does.
private func consumeWithPull(_ endpoint: String, port: Int, count: Int, decode: Bool) throws -> Int32 {
  let cpuStart = processCPUSeconds()
  let context = try ZMQContext(ioThreads: 1)
  let socket = try Socket(.pull, context: context)
  // As much as a default guaranteed edge holds, half on each side (the producer
  // sets the other half), as in the throughput benchmark.
  try socket.setOption(.receiveHighWaterMark, 512)
  try socket.setOption(.linger, 0)
  try socket.connect(endpoint)
  tellConnected(port: port)
  var errors: [String: Int] = [:]
  var assembler = WireAssembler(maxMessage: 1 << 30) { kind, _ in errors[kind, default: 0] += 1 }
  var (frames, bytes) = (0, 0)
  var names = Set<String>()
  while frames < count {
    guard try socket.poll(.readable, timeout: .seconds(30)).contains(.readable) else { break }
    while frames < count, var message = try socket.tryReceiveMultipart() {
      if !decode {
        frames += 1
        bytes += message.withPart(at: 0) { $0.count }
        continue
      }
      guard let frame = assembler.accept(&message), frame.kind == .data else { continue }
      frames += 1
      bytes += frame.byteCount
      names.insert(frame.meta.name)
    }
  }
  let (end, cpu) = (monotonicNanos(), processCPUSeconds() - cpuStart)
  socket.close()
  tellDone(
    end: end, frames: frames, bytes: bytes, distinct: decode ? names.count : frames, duplicates: 0,
    errors: errors, cpu: cpu)
  return frames == count ? 0 : 1
}

/// What a consumer reported when it was done.
struct ConsumerResult {
  /// CLOCK_MONOTONIC when the last data frame arrived.
  var end: UInt64
  var frames: Int
  var bytes: Int
  var distinct: Int
  var duplicates: Int
  var errors: String
  /// CPU seconds the consumer process used.
  var cpuSeconds: Double
}

/// A `hidra-bench consume` child process and the lines it prints.
final class ConsumerProcess {
  private let process = Process()
  private let output = Pipe()
  private var buffer: [UInt8] = []

  /// Starts `hidra-bench consume MODE ENDPOINT COUNT` and waits until it says `ready`.
  init(mode: String, endpoint: String, count: Int) {
    process.executableURL = URL(fileURLWithPath: "/proc/self/exe")
    process.arguments = ["consume", mode, endpoint, String(count)]
    process.standardOutput = output
    fflush(nil)
    do { try process.run() } catch { fatalError("cannot start the consumer process: \(error)") }
    expect("ready", within: 30)
  }

  /// Waits for the line `text`; anything else, or nothing within `seconds`, stops the benchmark.
  func expect(_ text: String, within seconds: Double) {
    let line = self.line(within: seconds)
    guard line == text else {
      stop()
      fatalError(
        "the consumer process said \(line.map { "'\($0)'" } ?? "nothing") where '\(text)' was expected")
    }
  }

  /// The `done` line, parsed, once the consumer has exited; nil when it failed.
  func result(within seconds: Double) -> ConsumerResult? {
    defer { stop() }
    while let line = line(within: seconds) {
      let fields = line.split(separator: " ")
      guard fields.first == "done", fields.count == 8 else {
        if line.hasPrefix("error") { print("  consumer: \(line)") }
        continue
      }
      guard let end = UInt64(fields[1]), let frames = Int(fields[2]), let bytes = Int(fields[3]),
        let distinct = Int(fields[4]), let duplicates = Int(fields[5]), let cpu = Double(fields[7])
      else { return nil }
      return ConsumerResult(
        end: end, frames: frames, bytes: bytes, distinct: distinct, duplicates: duplicates,
        errors: String(fields[6]), cpuSeconds: cpu)
    }
    return nil
  }

  /// Ends the process (if it still runs) and reaps it.
  func stop() {
    if process.isRunning {
      // Give it a moment to exit by itself after its last line.
      _ = waitUntil(seconds: 2) { !process.isRunning }
      if process.isRunning { process.terminate() }
    }
    process.waitUntilExit()
  }

  /// The next line the child printed; nil at its end or after `seconds`.
  func line(within seconds: Double) -> String? {
    let descriptor = output.fileHandleForReading.fileDescriptor
    let deadline = monotonicNanos() + UInt64(seconds * 1e9)
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
      if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
        let line = String(decoding: buffer[..<newline], as: UTF8.self)
        buffer.removeSubrange(...newline)
        return line
      }
      let now = monotonicNanos()
      guard now < deadline else { return nil }
      var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
      guard poll(&entry, 1, Int32(min(1000, (deadline - now) / 1_000_000 + 1))) > 0 else { continue }
      let count = read(descriptor, &chunk, chunk.count)
      if count < 0 && errno == EINTR { continue }
      guard count > 0 else { return nil }
      buffer += chunk[..<count]
    }
  }
}

/// A TCP port on 127.0.0.1 that nothing uses right now.
func freePort() -> Int {
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  defer { close(fd) }
  var address = sockaddr_in()
  address.sin_family = sa_family_t(AF_INET)
  address.sin_addr.s_addr = inet_addr("127.0.0.1")
  var length = socklen_t(MemoryLayout<sockaddr_in>.size)
  let bound = withUnsafeMutablePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
  }
  precondition(bound == 0, "cannot bind a socket to 127.0.0.1: \(errno)")
  _ = withUnsafeMutablePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
  }
  return Int(UInt16(bigEndian: address.sin_port))
}
