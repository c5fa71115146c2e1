// `wire`: decoding what crosses a process boundary, per message: the native wire
// header of a frame (every frame a `zmq` source or a HidraReceiver takes), an
// acknowledgement (what a `push` forward reads back), and the JSON parts of an
// EIGER stream v1 image. Each decoder through the fast JSON reader, against the
// same decoder through Foundation's JSONSerialization (the baseline), which is
// what both used before the reader and what the reader falls back to. A third
// column times JSONSerialization's parse alone (no conversion, no checks): no
// decoder built on it can be faster, so fast/parse is the speed-up at least.

import Foundation
import HidraRuntime

func benchWire() {
  let rounds = BenchOptions.rounds(default: 5)
  let count = BenchOptions.quick ? 5_000 : 20_000
  var meta = FrameMeta(
    id: 123_457, series: 3, frame: 123_456, name: "series_3/frame_123456.raw",
    createdNanos: 1_764_048_000_123_456_789)
  let plain = Wire.encodeHeader(Frame(kind: .data, meta: meta, parts: [Payload(copying: [0])]), seq: 123_457)
  meta.shape = [1028, 512]
  meta.dtype = "uint32"
  meta.encoding = "bs32-lz4"
  meta.checksums.set("xxh3", 0x9a0b_3c5d_1e2f_4a6b)
  let described = Wire.encodeHeader(
    Frame(kind: .data, meta: meta, parts: [Payload(copying: [0])]), seq: 123_457)
  let ack = Wire.Control.ack(seqs: Array(1...16), failed: []).encoded()
  // An EIGER stream v1 image's JSON parts (SIMPLON stream v1: dimage, dimage_d, dconfig).
  let image = [
    #"{"htype":"dimage-1.0","series":3,"frame":123456,"hash":"0f343b0931126a20f133d67c2b018a3b"}"#,
    #"{"htype":"dimage_d-1.0","shape":[1028,512],"type":"uint32","encoding":"bs32-lz4<","size":412345}"#,
    #"{"htype":"dconfig-1.0","start_time":1234567890,"stop_time":1234568890,"real_time":1000}"#,
  ].map { Array($0.utf8) }

  let cases: [(String, [UInt8]?, (Bool) -> Void)] = [
    (
      "wire header (4 KiB frame)", plain,
      { foundation in _ = try! plain.withUnsafeBytes { try Wire.decodeHeader($0, foundationOnly: foundation) }
      }
    ),
    (
      "wire header (image: shape, dtype, xxh3)", described,
      { foundation in
        _ = try! described.withUnsafeBytes { try Wire.decodeHeader($0, foundationOnly: foundation) }
      }
    ),
    (
      "ack of 16 frames", ack,
      { foundation in _ = try! ack.withUnsafeBytes { try Wire.Control.decode($0, foundationOnly: foundation) }
      }
    ),
    (
      "EIGER v1 image (dimage, dimage_d, dconfig)", nil,
      { foundation in
        for part in image {
          _ = part.withUnsafeBytes { JSONValue.object(parsing: $0, foundationOnly: foundation)! }
        }
      }
    ),
  ]
  print(
    "wire: decoding one message, fast JSON reader vs JSONSerialization (best of \(rounds), \(count) each)")
  var rows = [
    [
      "message", "bytes", "foundation us", "parse alone us", "fast us", "fast/foundation time",
      "fast/parse alone time",
    ]
  ]
  for (name, bytes, decode) in cases {
    let texts = bytes.map { [$0] } ?? image
    var (slow, parse, fast) = ([Double](), [Double](), [Double]())
    for _ in 0..<rounds {
      slow.append(fastest(1) { for _ in 0..<count { decode(true) } } / Double(count) * 1e6)
      parse.append(
        fastest(1) {
          for _ in 0..<count {
            for text in texts {
              _ = try! text.withUnsafeBytes { try JSONSerialization.jsonObject(with: Data($0)) }
            }
          }
        } / Double(count) * 1e6)
      fast.append(fastest(1) { for _ in 0..<count { decode(false) } } / Double(count) * 1e6)
    }
    let (slowBest, parseBest, fastBest) = (slow.min()!, parse.min()!, fast.min()!)
    rows.append([
      name, String(texts.map(\.count).reduce(0, +)), fixed(slowBest, 2), fixed(parseBest, 2),
      fixed(fastBest, 2),
      fixed(fastBest / slowBest), fixed(fastBest / parseBest),
    ])
  }
  printTable(rows)
  print("  below 1.0 is faster; both decoders give the same values (JSONValueTests)")
}
