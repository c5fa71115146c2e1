// monitor: TIFFs served per second by a simplon-monitor forward on images/next
// (OnDA's loop: one connection per request), against decoding the same
// bitshuffle+LZ4 frames in a loop in one thread (the baseline, measured in the
// same run).
//
// The forward is fed by `premade` (the same few compressed payloads, with the
// metadata of an EIGER stream v1 image: bs32-lz4, uint32, shape), which holds
// its series open so the server keeps serving; the buffer is filled first, then
// the clients take every image. Each served image costs: bitshuffle+LZ4 decode
// into the response buffer, the TIFF header, and the HTTP transfer over loopback
// (the clients' reading included: they run on the same 2 cores).

import Foundation
import HidraCodec
import HidraGraph
import HidraNodes
import HidraRuntime
import Synchronization

/// Detector-like uint32 pixels: mostly small counts, some large values and gaps.
func detectorPixels(count: Int, seed: UInt64) -> [UInt8] {
  var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
  var pixels = [UInt32](repeating: 0, count: count)
  for index in 0..<count {
    state ^= state << 13
    state ^= state >> 7
    state ^= state << 17
    pixels[index] = UInt32(truncatingIfNeeded: state % 5 == 0 ? state % 9 : 0)
    if state % 211 == 0 { pixels[index] = .max }
    if state % 1009 == 0 { pixels[index] = UInt32(truncatingIfNeeded: state >> 40) }
  }
  return pixels.withUnsafeBytes { Array($0) }
}

/// One GET on a new connection (`Connection: close`), read to the end into
/// `scratch`; returns the status code and the bytes received (head and body).
func benchGet(port: Int, path: String, scratch: UnsafeMutableRawBufferPointer) -> (Int, Int) {
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  defer { close(fd) }
  var address = sockaddr_in()
  address.sin_family = sa_family_t(AF_INET)
  address.sin_port = in_port_t(UInt16(port).bigEndian)
  address.sin_addr.s_addr = inet_addr("127.0.0.1")
  let connected = withUnsafePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
      connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
    }
  }
  guard connected == 0 else { return (0, 0) }
  let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
  _ = request.withUnsafeBytes { send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
  var total = 0
  var status = 0
  while true {
    let count = recv(fd, scratch.baseAddress!, scratch.count, 0)
    if count <= 0 { break }
    if total == 0 && count >= 12 {
      let code = UnsafeRawBufferPointer(rebasing: scratch[9..<12])
      status = Int(String(decoding: code, as: UTF8.self)) ?? 0
    }
    total += count
  }
  return (status, total)
}

func benchMonitor() {
  let rounds = BenchOptions.rounds(default: 3)
  let clients = 2
  print(
    "monitor: images/next served by a simplon-monitor forward (\(clients) clients, one connection per request)"
      + " vs bitshuffle+LZ4 decode of the same frames in one thread (best of \(rounds))")
  var rows = [
    [
      "frame", "bslz4 MB", "decode/s", "decode GB/s", "served/s", "served GB/s", "served/decode",
      "1 client/s", "1 client/decode",
    ]
  ]
  for (side, name) in [(1024, "1M px uint32"), (2048, "4M px uint32")] {
    let pixels = side * side
    let pixelBytes = pixels * 4
    let distinct = 4
    let raw = (0..<distinct).map { detectorPixels(count: pixels, seed: UInt64($0 + 1)) }
    let compressed = raw.map { data in data.withUnsafeBytes { Bitshuffle.compressLZ4($0, elementSize: 4) } }
    let payloads = compressed.map { Payload(copying: $0) }
    let requests = (BenchOptions.quick ? 40 : 160) * 1024 / side
    let output = UnsafeMutableRawBufferPointer.allocate(byteCount: pixelBytes, alignment: 64)
    defer { output.deallocate() }
    for index in 0..<distinct {
      try! Bitshuffle.decompressLZ4(payloads[index].bytes, into: output, elementSize: 4)
      precondition(
        memcmp(output.baseAddress!, raw[index], pixelBytes) == 0, "the decoder does not round-trip")
    }

    var decodeRates: [Double] = []
    var servedRates: [Double] = []
    var singleRates: [Double] = []
    for _ in 0..<rounds {
      let start = monotonicNanos()
      for index in 0..<requests {
        try! Bitshuffle.decompressLZ4(payloads[index % distinct].bytes, into: output, elementSize: 4)
      }
      decodeRates.append(Double(requests) / (Double(monotonicNanos() - start) / 1e9))
      servedRates.append(serveMonitor(payloads: payloads, side: side, requests: requests, clients: clients))
      singleRates.append(serveMonitor(payloads: payloads, side: side, requests: requests / 2, clients: 1))
    }
    let decode = best(decodeRates)
    let served = best(servedRates)
    let single = best(singleRates)
    let megabytes = Double(compressed.map(\.count).reduce(0, +)) / Double(distinct) / 1e6
    rows.append([
      name, fixed(megabytes, 2), fixed(decode, 0), fixed(decode * Double(pixelBytes) / 1e9, 2),
      fixed(served, 0),
      fixed(served * Double(pixelBytes) / 1e9, 2), fixed(served / decode), fixed(single, 0),
      fixed(single / decode),
    ])
  }
  printTable(rows)
  print("  decode = Bitshuffle.decompressLZ4 into one preallocated buffer (no TIFF, no HTTP), one thread")
  print("  served = whole TIFFs received by the clients per second; GB/s counts the decoded pixels")
}

/// Runs premade -> simplon-monitor, fills its buffer with `requests` images, then
/// lets `clients` threads take them all with images/next; returns images per second.
func serveMonitor(payloads: [Payload], side: Int, requests: Int, clients: Int) -> Double {
  let port = freePort()
  let yaml = """
    nodes:
      src: {type: premade, count: \(requests), hold: true}
      live:
        type: forward
        input: {from: src, delivery: guaranteed, buffer: {frames: \(requests + 8), bytes: 1TiB}}
        format: simplon-monitor
        listen: http://127.0.0.1:\(port)
        buffer_size: \(requests)
        buffer_bytes: 1TiB
    """
  let check = GraphValidator(catalog: HarnessNodes.catalog).validate(text: yaml, file: "bench.yaml")
  guard check.isValid, let graph = check.graph else {
    fatalError("monitor graph is invalid: \(check.diagnostics.sorted.map(\.description))")
  }
  var factory = HarnessFactory(tallies: [:], premade: payloads)
  factory.premadeMeta = FrameMeta(encoding: "bs32-lz4", shape: [side, side], dtype: "uint32")
  let runtime = try! Runtime(graph: graph, factory: factory)
  runtime.start()
  defer {
    runtime.requestStop()
    precondition(runtime.wait(timeoutNanos: 30_000_000_000), "the monitor graph did not stop")
    precondition(runtime.failures.isEmpty, "monitor graph failed: \(runtime.failures)")
  }
  let api = "/monitor/api/1.8.0"
  let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
  defer { scratch.deallocate() }
  // Wait until every image is buffered.
  let deadline = monotonicNanos() + 60_000_000_000
  while monotonicNanos() < deadline {
    let (status, _) = benchGet(port: port, path: "\(api)/status/buffer_fill_level", scratch: scratch)
    if status == 200, runtime.metrics.node("live")?.framesIn.load(ordering: .relaxed) ?? 0 >= requests + 1 {
      break
    }
    usleep(20_000)
  }
  let expected = tiffSize(side: side)
  let taken = Atomic<Int>(0)
  let bad = Atomic<Int>(0)
  let start = monotonicNanos()
  DispatchQueue.concurrentPerform(iterations: clients) { _ in
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
    defer { buffer.deallocate() }
    while taken.add(1, ordering: .relaxed).newValue <= requests {
      let (status, bytes) = benchGet(port: port, path: "\(api)/images/next", scratch: buffer)
      if status != 200 || bytes < expected { bad.add(1, ordering: .relaxed) }
    }
  }
  let seconds = Double(monotonicNanos() - start) / 1e9
  precondition(
    bad.load(ordering: .relaxed) == 0, "\(bad.load(ordering: .relaxed)) images/next requests failed")
  return Double(requests) / seconds
}

/// Bytes of the TIFF of a `side` x `side` uint32 image.
func tiffSize(side: Int) -> Int { TIFF.headerSize + side * side * 4 }
