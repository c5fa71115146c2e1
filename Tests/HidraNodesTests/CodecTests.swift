import Foundation
import HidraCodec
import Testing

/// LZ4, bitshuffle+LZ4 and the monitor's TIFF, checked against a bit-by-bit
/// reference encoder written from the format description, against vectors made
/// by the `bitshuffle` Python package, and with malformed input.
@Suite struct CodecTests {
  // MARK: - A reference encoder, one bit at a time

  /// Bitshuffle of one block (a multiple of 8 elements), straight from the
  /// description: row `r` holds bit `r` of every element, element `i` at bit
  /// `i % 8` of byte `i / 8`.
  static func referenceShuffle(_ elements: ArraySlice<UInt8>, elementSize e: Int) -> [UInt8] {
    let data = Array(elements)
    let n = data.count / e
    precondition(n % 8 == 0)
    var rows = [UInt8](repeating: 0, count: n * e)
    for i in 0..<n {
      for bit in 0..<(8 * e) {
        let value = (data[i * e + bit / 8] >> (bit % 8)) & 1
        rows[bit * (n / 8) + i / 8] |= value << (i % 8)
      }
    }
    return rows
  }

  static func bigEndian(_ value: Int, _ count: Int) -> [UInt8] {
    (0..<count).reversed().map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
  }

  /// Bitshuffle+LZ4 made with the reference shuffle (blocks, leftover, optional header).
  static func referenceCompress(_ data: [UInt8], elementSize e: Int, blockSize: Int, header: Bool) -> [UInt8]
  {
    var out = header ? bigEndian(data.count, 8) + bigEndian(blockSize * e, 4) : []
    let count = data.count / e
    var element = 0
    while count - element >= 8 {
      let n = min(blockSize, (count - element) / 8 * 8)
      let shuffled = referenceShuffle(data[(element * e)..<((element + n) * e)], elementSize: e)
      let compressed = shuffled.withUnsafeBytes { LZ4.compress($0) }
      out += bigEndian(compressed.count, 4) + compressed
      element += n
    }
    return out + data[(element * e)...]
  }

  /// Deterministic test data: detector-like (mostly small counts, some large
  /// values and 0xFF gaps) or uniformly random.
  static func data(count: Int, elementSize: Int, seed: UInt64, noisy: Bool = false) -> [UInt8] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    var out = [UInt8](repeating: 0, count: count * elementSize)
    for i in 0..<count {
      state ^= state << 13
      state ^= state >> 7
      state ^= state << 17
      var value = noisy ? state : state % 7
      if !noisy && state % 97 == 0 { value = .max }
      if !noisy && state % 89 == 0 { value = state >> 20 }
      for b in 0..<elementSize { out[i * elementSize + b] = UInt8(truncatingIfNeeded: value >> (8 * b)) }
    }
    return out
  }

  // MARK: - Bitshuffle

  struct ShuffleCase: Sendable, CustomTestStringConvertible {
    var elementSize: Int
    var count: Int
    var testDescription: String { "\(count) elements of \(elementSize) bytes" }
  }

  static let shuffleCases: [ShuffleCase] = [1, 2, 4, 8].flatMap { e in
    [8, 16, 56, 64, 72, 128, 200, 2048].map { ShuffleCase(elementSize: e, count: $0) }
  }

  @Test(arguments: shuffleCases)
  func shuffleMatchesTheReferenceBitForBit(_ item: ShuffleCase) {
    let data = Self.data(
      count: item.count, elementSize: item.elementSize, seed: UInt64(item.count), noisy: true)
    let reference = Self.referenceShuffle(data[...], elementSize: item.elementSize)
    var shuffled = [UInt8](repeating: 0, count: data.count)
    var back = [UInt8](repeating: 0xEE, count: data.count)
    data.withUnsafeBytes { input in
      shuffled.withUnsafeMutableBytes { output in
        Bitshuffle.shuffle(
          input.baseAddress!, output.baseAddress!, count: item.count, elementSize: item.elementSize)
      }
    }
    #expect(shuffled == reference)
    reference.withUnsafeBytes { input in
      back.withUnsafeMutableBytes { output in
        Bitshuffle.unshuffle(
          input.baseAddress!, output.baseAddress!, count: item.count, elementSize: item.elementSize)
      }
    }
    #expect(back == data)
  }

  /// Vectors from the `bitshuffle` Python package (0.5.2), `bitshuffle.bitshuffle(a)`:
  /// an independent implementation of the same format.
  @Test func unshuffleMatchesTheBitshufflePackage() throws {
    let words = (0..<72).map { UInt32(truncatingIfNeeded: $0 &* 2_654_435_761) }
    let text32 =
      "aaaaaaaaaaaaaaaaaaccccccccccccccccccf0f0f0f0f0f0f0f0f000ff00ff00ff00ff00aaaa5555aaaa5555aa6666cccc9999333366"
      + "b4b49696d2d25a5a4b926db24db64936c9268ee3713c8ec7f1381ed44aa5562b955aad541873c69833e69c31674a29adb596524a"
      + "6b2dc618638c71ce39e71c3ef8e0830f3ef8e003fe07e07f00fe07e0ff5455b5aaaa5455b5aa3233939999cdcc6c660e0f8f8787"
      + "c3c3e3e1fe007f807fc03fe01f5455aa2a5595aa4a5532339999cc4c6626330e0f8787c3c3e1e1f054aad52a956ab54aa59833e6"
      + "cc1973c68c39e0c3070f1e7cf8f0c1aa56ad5ab52a55aa5466ce9c3973e6cc99331e3e7cf8f0e1c3870ffe01fc07f01fc07f0054"
      + "55a9aa5a5595aaaa989931336366e6cccc4a4b6b69292dada5a5"
    let shuffled32 = try #require(Self.hex(text32))
    var out = [UInt32](repeating: 0, count: 72)
    shuffled32.withUnsafeBytes { input in
      out.withUnsafeMutableBytes {
        Bitshuffle.unshuffle(input.baseAddress!, $0.baseAddress!, count: 72, elementSize: 4)
      }
    }
    #expect(out == words)

    // 21 uint16: one block of 16, then 5 elements as they are.
    let halfwords = (0..<21).map { UInt16(truncatingIfNeeded: $0 &* 40503 &+ 7) }
    let shuffled16 = try #require(
      Self.hex("555533330f0faa5566331e0f54aa9833e0c3aa5666ce1e3efe01545598994a4b77e3ae81e51f1cbe535c"))
    var raw = shuffled16
    // As an uncompressed "stream": header-less bitshuffle without LZ4 is the
    // shuffled block then the leftover; check the block and the leftover.
    var block = [UInt16](repeating: 0, count: 16)
    raw.withUnsafeBytes { input in
      block.withUnsafeMutableBytes {
        Bitshuffle.unshuffle(input.baseAddress!, $0.baseAddress!, count: 16, elementSize: 2)
      }
    }
    #expect(block == Array(halfwords[0..<16]))
    raw.removeFirst(32)
    #expect(raw.withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) } == Array(halfwords[16...]))
  }

  static func hex(_ text: String) -> [UInt8]? {
    var bytes: [UInt8] = []
    var index = text.startIndex
    while index < text.endIndex {
      let next = text.index(index, offsetBy: 2)
      guard let byte = UInt8(text[index..<next], radix: 16) else { return nil }
      bytes.append(byte)
      index = next
    }
    return bytes
  }

  struct CompressCase: Sendable, CustomTestStringConvertible {
    var elementSize: Int
    var count: Int
    var blockSize: Int?
    var header: Bool
    var testDescription: String {
      "\(count) x \(elementSize) B, block \(blockSize.map(String.init) ?? "default"), header \(header)"
    }
  }

  static let compressCases: [CompressCase] =
    [2, 4].flatMap { e in
      [
        CompressCase(elementSize: e, count: 0, blockSize: nil, header: true),
        CompressCase(elementSize: e, count: 5, blockSize: nil, header: true),
        CompressCase(elementSize: e, count: 1000, blockSize: nil, header: true),
        CompressCase(elementSize: e, count: 3 * 4096 + 24 + 3, blockSize: nil, header: true),
        CompressCase(elementSize: e, count: 3 * 4096 + 24 + 3, blockSize: nil, header: false),
        CompressCase(elementSize: e, count: 1031, blockSize: 136, header: true),
        CompressCase(elementSize: e, count: 517 * 3, blockSize: 64, header: true),
      ]
    } + [
      CompressCase(elementSize: 1, count: 10_007, blockSize: nil, header: true),
      CompressCase(elementSize: 1, count: 10_007, blockSize: nil, header: false),
    ]

  @Test(arguments: compressCases)
  func bitshuffleLZ4RoundTripsExactly(_ item: CompressCase) throws {
    let e = item.elementSize
    let data = Self.data(count: item.count, elementSize: e, seed: UInt64(item.count * 31 + e))
    let blockSize = item.blockSize ?? Bitshuffle.defaultBlockSize(elementSize: e)
    let reference = Self.referenceCompress(data, elementSize: e, blockSize: blockSize, header: item.header)
    let encoded = data.withUnsafeBytes {
      Bitshuffle.compressLZ4($0, elementSize: e, blockSize: item.blockSize, header: item.header)
    }
    #expect(encoded == reference, "the encoder writes the reference bytes")
    var decoded = [UInt8](repeating: 0xEE, count: data.count)
    try reference.withUnsafeBytes { source in
      try decoded.withUnsafeMutableBytes { try Bitshuffle.decompressLZ4(source, into: $0, elementSize: e) }
    }
    #expect(decoded == data)
  }

  @Test func defaultBlockSizes() {
    #expect(Bitshuffle.defaultBlockSize(elementSize: 1) == 8192)
    #expect(Bitshuffle.defaultBlockSize(elementSize: 2) == 4096)
    #expect(Bitshuffle.defaultBlockSize(elementSize: 4) == 2048)
    #expect(Bitshuffle.defaultBlockSize(elementSize: 128) == 128)
  }

  /// Truncated, corrupted or mislabelled data is an error, never a crash or an overrun.
  @Test func malformedBitshuffleIsRejected() {
    let data = Self.data(count: 5000, elementSize: 2, seed: 9)
    let good = data.withUnsafeBytes { Bitshuffle.compressLZ4($0, elementSize: 2) }
    var cases: [(String, [UInt8], Int)] = [
      ("truncated", Array(good.dropLast(7)), data.count),
      ("one byte more", good + [0], data.count),
      ("header only", Array(good.prefix(12)), data.count),
      ("empty", [], data.count),
      ("wrong size", good, data.count - 2),
      ("odd size", good, data.count + 1),
      ("noise", (0..<4000).map { UInt8(truncatingIfNeeded: $0 &* 7919 >> 3) }, data.count),
    ]
    var lying = good
    lying[12..<16] = [0x7f, 0xff, 0xff, 0xff]  // first block length beyond the end
    cases.append(("block length past the end", lying, data.count))
    var corrupt = good
    for index in stride(from: 20, to: corrupt.count, by: 5) { corrupt[index] ^= 0x5a }
    cases.append(("corrupted blocks", corrupt, data.count))
    for (name, bytes, size) in cases {
      var out = [UInt8](repeating: 0, count: size)
      #expect(throws: CodecError.self, "\(name)") {
        try bytes.withUnsafeBytes { source in
          try out.withUnsafeMutableBytes { try Bitshuffle.decompressLZ4(source, into: $0, elementSize: 2) }
        }
      }
    }
  }

  // MARK: - LZ4

  @Test(arguments: [0, 1, 100, 70_000, 300_000])
  func lz4RawAndFramedRoundTrip(_ size: Int) throws {
    let data = Self.data(count: size, elementSize: 1, seed: UInt64(size))
    let raw = data.withUnsafeBytes { LZ4.compress($0) }
    // Small blocks so incompressible ones are stored as they are.
    let framed = data.withUnsafeBytes { LZ4.compressFramed($0, blockSize: 4096) }
    let noise = Self.data(count: size, elementSize: 1, seed: 3, noisy: true)
    let framedNoise = noise.withUnsafeBytes { LZ4.compressFramed($0, blockSize: 4096) }
    for (encoded, original) in [(raw, data), (framed, data), (framedNoise, noise)] {
      var out = [UInt8](repeating: 0xEE, count: original.count)
      try encoded.withUnsafeBytes { source in
        try out.withUnsafeMutableBytes { try LZ4.decompress(source, into: $0) }
      }
      #expect(out == original)
    }
    if size > 0 {
      var out = [UInt8](repeating: 0, count: size)
      #expect(throws: CodecError.self) {
        try Array(raw.dropLast()).withUnsafeBytes { source in
          try out.withUnsafeMutableBytes { try LZ4.decompress(source, into: $0) }
        }
      }
      #expect(throws: CodecError.self) {
        try Array(framed.dropLast()).withUnsafeBytes { source in
          try out.withUnsafeMutableBytes { try LZ4.decompressFramed(source, into: $0) }
        }
      }
      var short = [UInt8](repeating: 0, count: size - 1)
      #expect(throws: CodecError.self) {
        try raw.withUnsafeBytes { source in
          try short.withUnsafeMutableBytes { try LZ4.decompress(source, into: $0) }
        }
      }
    }
  }

  // MARK: - TIFF

  @Test func tiffHeaderHasWhatOnDAReads() throws {
    let layout = TIFF.Layout(width: 1030, height: 514, bytesPerSample: 4, format: .unsigned)
    var header = [UInt8](repeating: 0xAA, count: TIFF.headerSize)
    header.withUnsafeMutableBytes {
      TIFF.writeHeader(into: $0, layout: layout, series: 17, frame: 123_456, nanos: 1_764_048_000_123_456_789)
    }
    func int32(_ offset: Int) -> Int32 {
      header.withUnsafeBytes { Int32(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: Int32.self)) }
    }
    #expect(Array(header[0..<4]) == [0x49, 0x49, 42, 0])
    #expect([int32(42), int32(46), int32(50), int32(54)] == [17, 0, 0, 123_456])
    #expect(String(decoding: header[162..<191], as: UTF8.self) == "2025-11-25T05:20:00.123+00:00")
    let ifd = Int(int32(4))
    #expect(ifd >= 192, "the IFD leaves bytes 42..57 and 162..190 alone")
    let tags = try Self.tiffTags(header)
    #expect(tags[256] == 1030 && tags[257] == 514 && tags[258] == 32 && tags[259] == 1 && tags[277] == 1)
    #expect(tags[273] == TIFF.headerSize && tags[279] == 1030 * 514 * 4 && tags[278] == 514 && tags[339] == 1)
    #expect(TIFF.timestamp(nanos: 0) == "1970-01-01T00:00:00.000+00:00")
    #expect(TIFF.timestamp(nanos: 999_999_999) == "1970-01-01T00:00:00.999+00:00")
  }

  /// The IFD's entries of a little-endian TIFF: tag -> first value.
  static func tiffTags(_ bytes: [UInt8]) throws -> [Int: Int] {
    func u16(_ offset: Int) -> Int { Int(bytes[offset]) | Int(bytes[offset + 1]) << 8 }
    func u32(_ offset: Int) -> Int { u16(offset) | u16(offset + 2) << 16 }
    let ifd = u32(4)
    try #require(ifd + 2 <= bytes.count)
    var tags: [Int: Int] = [:]
    for index in 0..<u16(ifd) {
      let entry = ifd + 2 + 12 * index
      try #require(entry + 12 <= bytes.count)
      tags[u16(entry)] = u16(entry + 2) == 3 ? u16(entry + 8) : u32(entry + 8)
    }
    return tags
  }
}
