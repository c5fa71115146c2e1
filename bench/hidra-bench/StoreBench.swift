// store: generate -> store against a plain write+rename loop doing the same work
// in the same run (issue "Store and forward": target >= 0.9 of the loop).

import Foundation
import HidraNodes
import HidraRuntime

/// The baseline: one thread makes each frame as `generate` does (a fresh buffer
/// filled by `GeneratedContent.fill`), writes it to a temporary file, syncs it if
/// asked, and renames it into place.
func plainStoreLoop(size: Int, count: Int, fsyncFile: Bool, directory: String) -> Double {
  let content = GeneratedContent(seed: 0, size: size)
  let start = monotonicNanos()
  for frame in 0..<count {
    let payload = Payload(count: size) { content.fill($0, series: 1, frame: frame) }
    let temporary = directory + "/.\(frame).bin.tmp"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    precondition(fd >= 0, "cannot create \(temporary): \(errno)")
    var offset = 0
    while offset < size {
      let written = write(fd, payload.bytes.baseAddress! + offset, size - offset)
      precondition(written > 0, "write failed: \(errno)")
      offset += written
    }
    if fsyncFile { fsync(fd) }
    close(fd)
    precondition(rename(temporary, directory + "/\(frame).bin") == 0)
  }
  return Double(monotonicNanos() - start) / 1e9
}

func benchStore() {
  print("store: generate -> store vs a plain write+rename loop (same fill, same files; best of rounds)")
  let rounds = BenchOptions.rounds(default: 3)
  var rows = [["size", "fsync", "frames", "loop MB/s", "hidra MB/s", "hidra/loop", "target", "met"]]
  for size in BenchOptions.selected([64 << 10, 1 << 20, 4 << 20]) {
    for sync in ["none", "file"] {
      let volume = (sync == "none" ? 512 : 128) << 20 / (BenchOptions.quick ? 4 : 1)
      let count = max(16, volume / size)
      var loopRates: [Double] = []
      var hidraRates: [Double] = []
      for _ in 0..<rounds {
        let base = NSTemporaryDirectory() + "hidra-bench-store-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: base + "/loop", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        let loop = plainStoreLoop(
          size: size, count: count, fsyncFile: sync == "file", directory: base + "/loop")
        loopRates.append(Double(size * count) / loop / 1e6)
        let run = runGraph(
          """
          nodes:
            det: {type: generate, size: \(size), count: \(count)}
            disk: {type: store, input: det, root: "\(base)/hidra", path: "{frame}.bin", fsync: \(sync)}
          """)
        let stored = (try? FileManager.default.contentsOfDirectory(atPath: base + "/hidra").count) ?? 0
        precondition(stored == count, "the store wrote \(stored) of \(count) files")
        hidraRates.append(Double(size * count) / run.seconds / 1e6)
      }
      let ratio = best(hidraRates) / best(loopRates)
      rows.append([
        sizeName(size), sync, String(count), fixed(best(loopRates), 0), fixed(best(hidraRates), 0),
        fixed(ratio),
        ">= 0.9", ratio >= 0.9 ? "yes" : "NO",
      ])
    }
  }
  printTable(rows)
  print("  both write below \(NSTemporaryDirectory()); fsync file syncs every file before its rename")
}
