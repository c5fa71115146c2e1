#if _endian(big)
  #error("Bitshuffle's word transposes assume a little-endian machine")
#endif

/// Bitshuffle with LZ4 (HDF5 filter 32008), the compression of EIGER images
/// (`bs16-lz4`, `bs32-lz4`, ...), written from the public format description.
///
/// The data is cut into blocks of `blockSize` elements (a multiple of 8; the
/// last block is what is left, rounded down to a multiple of 8). Within a block
/// of `n` elements of `E` bytes, the bits are transposed: the block becomes
/// `8 * E` rows of `n / 8` bytes, row `r` holding bit `r` (little-endian bit
/// order over the element's bytes) of every element, element `i` at bit `i % 8`
/// of byte `i / 8`. Each shuffled block is LZ4-compressed and stored as a
/// 4-byte big-endian length followed by the LZ4 block. The last `count % 8`
/// elements are stored as they are after the blocks. The HDF5 filter (and an
/// EIGER's stream) put a 12-byte header first: the uncompressed size in bytes
/// (8 bytes, big-endian) and the block size in bytes (4 bytes, big-endian).
///
/// The transposition works on 64 elements at a time with 64-bit words (two such
/// chunks at once in 128-bit vectors): a bit-matrix transpose across eight rows'
/// words (three mask-and-shift stages, no branches), then an 8x8 byte transpose
/// that interleaves the element bytes.
public enum Bitshuffle {
  /// Bytes of the HDF5 filter's header.
  public static let headerSize = 12

  /// The block size bitshuffle picks when none is given: 8 KiB of elements,
  /// rounded down to a multiple of 8, at least 128.
  public static func defaultBlockSize(elementSize: Int) -> Int {
    max(128, 8192 / elementSize / 8 * 8)
  }

  /// Whether `source` starts with the filter header announcing `size` bytes and
  /// a usable block size.
  public static func hasHeader(_ source: UnsafeRawBufferPointer, size: Int, elementSize: Int) -> Bool {
    guard source.count >= headerSize, BigEndian.uint64(source, 0) == UInt64(size) else { return false }
    let block = Int(BigEndian.uint32(source, 8))
    return block > 0 && block % (8 * elementSize) == 0
  }

  /// Decodes bitshuffle+LZ4 data of `elementSize`-byte elements into exactly
  /// `destination.count` bytes. The 12-byte header is used when present (and
  /// matches the size); without it the default block size is assumed.
  public static func decompressLZ4(
    _ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer, elementSize: Int
  ) throws(CodecError) {
    guard elementSize > 0, destination.count % elementSize == 0 else {
      throw CodecError("\(destination.count) bytes are not a whole number of \(elementSize)-byte elements")
    }
    var blockSize = defaultBlockSize(elementSize: elementSize)
    var offset = 0
    if hasHeader(source, size: destination.count, elementSize: elementSize) {
      blockSize = Int(BigEndian.uint32(source, 8)) / elementSize
      offset = headerSize
    }
    let count = destination.count / elementSize
    let largest = min(blockSize, count / 8 * 8) * elementSize
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: max(largest, 8), alignment: 16)
    defer { scratch.deallocate() }
    var element = 0
    while count - element >= 8 {
      let n = min(blockSize, (count - element) / 8 * 8)
      guard source.count - offset >= 4 else {
        throw CodecError("bitshuffle data ends before the block at element \(element)")
      }
      let length = Int(BigEndian.uint32(source, offset))
      offset += 4
      guard length <= source.count - offset else {
        throw CodecError("bitshuffle block of \(length) bytes runs past the end of the data")
      }
      let block = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<n * elementSize])
      try LZ4.decompressBlock(UnsafeRawBufferPointer(rebasing: source[offset..<offset + length]), into: block)
      offset += length
      unshuffle(
        UnsafeRawPointer(block.baseAddress!), destination.baseAddress! + element * elementSize, count: n,
        elementSize: elementSize)
      element += n
    }
    let rest = (count - element) * elementSize
    guard source.count - offset == rest else {
      throw CodecError(
        "bitshuffle data has \(source.count - offset) bytes after its blocks, expected \(rest)")
    }
    if rest > 0 {
      UnsafeMutableRawBufferPointer(rebasing: destination[(element * elementSize)...]).copyMemory(
        from: UnsafeRawBufferPointer(rebasing: source[offset...]))
    }
  }

  /// Encodes `source` (elements of `elementSize` bytes) as bitshuffle+LZ4, with
  /// the 12-byte header unless `header` is false.
  public static func compressLZ4(
    _ source: UnsafeRawBufferPointer, elementSize: Int, blockSize: Int? = nil, header: Bool = true
  ) -> [UInt8] {
    precondition(elementSize > 0 && source.count % elementSize == 0, "not a whole number of elements")
    let blockSize = blockSize ?? defaultBlockSize(elementSize: elementSize)
    precondition(blockSize > 0 && blockSize % 8 == 0, "the block size is a positive multiple of 8")
    let count = source.count / elementSize
    var output: [UInt8] = []
    output.reserveCapacity(source.count / 2 + 64)
    if header {
      output += BigEndian.bytes(UInt64(source.count), 8) + BigEndian.bytes(UInt64(blockSize * elementSize), 4)
    }
    let largest = max(min(blockSize, count / 8 * 8) * elementSize, 8)
    var shuffled = [UInt8](repeating: 0, count: largest)
    var compressed = [UInt8](repeating: 0, count: LZ4.compressBound(largest))
    var element = 0
    while count - element >= 8 {
      let n = min(blockSize, (count - element) / 8 * 8)
      let length = shuffled.withUnsafeMutableBytes { block in
        shuffle(
          source.baseAddress! + element * elementSize, block.baseAddress!, count: n, elementSize: elementSize)
        return compressed.withUnsafeMutableBytes {
          LZ4.compressBlock(UnsafeRawBufferPointer(rebasing: block[0..<n * elementSize]), into: $0)
        }
      }
      output += BigEndian.bytes(UInt64(length), 4)
      output += compressed[0..<length]
      element += n
    }
    output += UnsafeRawBufferPointer(rebasing: source[(element * elementSize)...])
    return output
  }

  // MARK: - The transposition

  /// Undoes the bit transposition of one block of `count` elements (a multiple
  /// of 8) of `elementSize` bytes: `input` holds `8 * elementSize` rows of
  /// `count / 8` bytes; `output` gets the elements.
  public static func unshuffle(
    _ input: UnsafeRawPointer, _ output: UnsafeMutableRawPointer, count: Int, elementSize: Int
  ) {
    transpose(input, output, count: count, elementSize: elementSize, inverse: true)
  }

  /// The bit transposition of one block of `count` elements (a multiple of 8):
  /// the inverse of `unshuffle`.
  public static func shuffle(
    _ input: UnsafeRawPointer, _ output: UnsafeMutableRawPointer, count: Int, elementSize: Int
  ) {
    transpose(input, output, count: count, elementSize: elementSize, inverse: false)
  }

  /// Both directions, with the common element sizes as constants so each gets
  /// its own specialised loop (inlined, so `inverse` is a constant there too).
  @inline(__always)
  private static func transpose(
    _ input: UnsafeRawPointer, _ output: UnsafeMutableRawPointer, count: Int, elementSize: Int, inverse: Bool
  ) {
    precondition(count % 8 == 0, "a bitshuffle block has a multiple of 8 elements")
    switch elementSize {
    case 1: transposeBlock(input, output, count: count, elementSize: 1, inverse: inverse)
    case 2: transposeBlock(input, output, count: count, elementSize: 2, inverse: inverse)
    case 4: transposeBlock(input, output, count: count, elementSize: 4, inverse: inverse)
    case 8: transposeBlock(input, output, count: count, elementSize: 8, inverse: inverse)
    default: transposeBlock(input, output, count: count, elementSize: elementSize, inverse: inverse)
    }
  }

  /// Two 64-bit words, one from each of two neighbouring 64-element chunks:
  /// every step below works on both at once (SSE2 on x86-64).
  typealias Pair = SIMD2<UInt64>

  /// Exchanges the bits of `a` selected by `mask << shift` with the bits of `b`
  /// selected by `mask`.
  @inline(__always)
  static func exchange(_ a: inout Pair, _ b: inout Pair, _ shift: UInt64, _ mask: Pair) {
    let t = ((a &>> shift) ^ b) & mask
    b ^= t
    a ^= t &<< shift
  }

  /// Transposes eight words seen as eight rows of 8x8 blocks: with the bit
  /// constants, bit `m` of byte `g` of word `k` trades places with bit `k` of
  /// byte `g` of word `m`; with the byte constants, byte `g` of word `k` with
  /// byte `k` of word `g`. Its own inverse.
  @inline(__always)
  static func transpose8(_ x: UnsafeMutablePointer<Pair>, bytes: Bool) {
    let (s1, s2, s3): (UInt64, UInt64, UInt64) = bytes ? (32, 16, 8) : (4, 2, 1)
    let (m1, m2, m3): (Pair, Pair, Pair) =
      bytes
      ? (
        Pair(repeating: 0x0000_0000_FFFF_FFFF), Pair(repeating: 0x0000_FFFF_0000_FFFF),
        Pair(repeating: 0x00FF_00FF_00FF_00FF)
      )
      : (
        Pair(repeating: 0x0F0F_0F0F_0F0F_0F0F), Pair(repeating: 0x3333_3333_3333_3333),
        Pair(repeating: 0x5555_5555_5555_5555)
      )
    var x0 = x[0]
    var x1 = x[1]
    var x2 = x[2]
    var x3 = x[3]
    var x4 = x[4]
    var x5 = x[5]
    var x6 = x[6]
    var x7 = x[7]
    exchange(&x0, &x4, s1, m1)
    exchange(&x1, &x5, s1, m1)
    exchange(&x2, &x6, s1, m1)
    exchange(&x3, &x7, s1, m1)
    exchange(&x0, &x2, s2, m2)
    exchange(&x1, &x3, s2, m2)
    exchange(&x4, &x6, s2, m2)
    exchange(&x5, &x7, s2, m2)
    exchange(&x0, &x1, s3, m3)
    exchange(&x2, &x3, s3, m3)
    exchange(&x4, &x5, s3, m3)
    exchange(&x6, &x7, s3, m3)
    x[0] = x0
    x[1] = x1
    x[2] = x2
    x[3] = x3
    x[4] = x4
    x[5] = x5
    x[6] = x6
    x[7] = x7
  }

  /// The 8x8 bit matrix in one word (byte `k` is row `k`, bit `m` column `m`), transposed.
  @inline(__always)
  static func transposeWord(_ word: UInt64) -> UInt64 {
    var x = word
    var t = (x ^ (x >> 7)) & 0x00AA_00AA_00AA_00AA
    x ^= t ^ (t << 7)
    t = (x ^ (x >> 14)) & 0x0000_CCCC_0000_CCCC
    x ^= t ^ (t << 14)
    t = (x ^ (x >> 28)) & 0x0000_0000_F0F0_F0F0
    x ^= t ^ (t << 28)
    return x
  }

  /// One block either way. Shuffled, row `8 * j + k` (bit `k` of byte `j`) is
  /// at `(8 * j + k) * rowBytes`. Per 64 elements (8 bytes of each row): for
  /// each byte `j`, the eight rows' words are bit-transposed, giving words
  /// `k` whose byte `g` is byte `j` of element `8 * g + k`; indexing them
  /// `k * E + j` and byte-transposing each run of eight gives the elements'
  /// bytes in order. Leftover groups of 8 elements (when `count` is not a
  /// multiple of 64) go one at a time through `transposeWord`.
  @inline(__always)
  static func transposeBlock(
    _ input: UnsafeRawPointer, _ output: UnsafeMutableRawPointer, count: Int, elementSize e: Int,
    inverse: Bool
  ) {
    let rowBytes = count / 8
    let chunks = rowBytes / 8
    let elements = inverse ? UnsafeRawPointer(output) : input
    let rows = inverse ? input : UnsafeRawPointer(output)
    withUnsafeTemporaryAllocation(of: Pair.self, capacity: 8 * e + 8) { words in
      let w = words.baseAddress!
      let lane = w + 8 * e
      // Two chunks at a time; a last odd chunk alone (its second lane unused).
      var chunk = 0
      while chunk < chunks {
        let two = chunk + 1 < chunks
        let rowOffset = chunk * 8
        let elementOffset = chunk * 64 * e
        let nextOffset = elementOffset + 64 * e
        if inverse {
          for j in 0..<e {
            for k in 0..<8 {
              let at = (8 * j + k) * rowBytes + rowOffset
              lane[k] =
                two
                ? input.loadUnaligned(fromByteOffset: at, as: Pair.self)
                : Pair(input.loadUnaligned(fromByteOffset: at, as: UInt64.self), 0)
            }
            transpose8(lane, bytes: false)
            for k in 0..<8 { w[k * e + j] = lane[k] }
          }
          for b in 0..<e {
            for i in 0..<8 { lane[i] = w[8 * b + i] }
            transpose8(lane, bytes: true)
            for g in 0..<8 {
              output.storeBytes(
                of: lane[g][0], toByteOffset: elementOffset + g * 8 * e + 8 * b, as: UInt64.self)
              if two {
                output.storeBytes(
                  of: lane[g][1], toByteOffset: nextOffset + g * 8 * e + 8 * b, as: UInt64.self)
              }
            }
          }
        } else {
          for b in 0..<e {
            for g in 0..<8 {
              let low = input.loadUnaligned(
                fromByteOffset: elementOffset + g * 8 * e + 8 * b, as: UInt64.self)
              let high =
                two ? input.loadUnaligned(fromByteOffset: nextOffset + g * 8 * e + 8 * b, as: UInt64.self) : 0
              lane[g] = Pair(low, high)
            }
            transpose8(lane, bytes: true)
            for i in 0..<8 { w[8 * b + i] = lane[i] }
          }
          for j in 0..<e {
            for k in 0..<8 { lane[k] = w[k * e + j] }
            transpose8(lane, bytes: false)
            for k in 0..<8 {
              let at = (8 * j + k) * rowBytes + rowOffset
              if two {
                output.storeBytes(of: lane[k], toByteOffset: at, as: Pair.self)
              } else {
                output.storeBytes(of: lane[k][0], toByteOffset: at, as: UInt64.self)
              }
            }
          }
        }
        chunk += two ? 2 : 1
      }
    }
    // Groups of 8 elements past the last whole 64.
    for g in (chunks * 8)..<rowBytes {
      for j in 0..<e {
        var word: UInt64 = 0
        if inverse {
          for k in 0..<8 {
            word |= UInt64(rows.load(fromByteOffset: (8 * j + k) * rowBytes + g, as: UInt8.self)) << (8 * k)
          }
          word = transposeWord(word)
          for m in 0..<8 {
            output.storeBytes(
              of: UInt8(truncatingIfNeeded: word >> (8 * m)), toByteOffset: (8 * g + m) * e + j,
              as: UInt8.self)
          }
        } else {
          for m in 0..<8 {
            word |= UInt64(elements.load(fromByteOffset: (8 * g + m) * e + j, as: UInt8.self)) << (8 * m)
          }
          word = transposeWord(word)
          for k in 0..<8 {
            output.storeBytes(
              of: UInt8(truncatingIfNeeded: word >> (8 * k)), toByteOffset: (8 * j + k) * rowBytes + g,
              as: UInt8.self)
          }
        }
      }
    }
  }
}
