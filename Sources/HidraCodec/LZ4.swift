import CLZ4

/// Why encoded image data could not be decoded (or encoded).
public struct CodecError: Error, CustomStringConvertible, Sendable, Equatable {
  public var description: String
  public init(_ description: String) { self.description = description }
}

/// LZ4 as detectors send it: a raw LZ4 block (EIGER stream v1 `lz4<`), or the
/// HDF5 LZ4 filter's framing (filter 32004, DECTRIS stream v2 `lz4`), through
/// Debian's liblz4.
public enum LZ4 {
  /// The largest block liblz4 handles (its sizes are `Int32`).
  public static let maxBlock = Int(LZ4_MAX_INPUT_SIZE)

  /// Decompresses one raw LZ4 block into exactly `destination.count` bytes;
  /// throws when the block is malformed or decodes to any other size.
  public static func decompressBlock(
    _ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer
  ) throws(CodecError) {
    guard source.count <= maxBlock, destination.count <= maxBlock else {
      throw CodecError("LZ4 block of \(source.count) bytes into \(destination.count) is too large")
    }
    if destination.isEmpty {
      // liblz4 encodes nothing as one zero token byte.
      guard source.count == 1, source[0] == 0 else { throw CodecError("LZ4 block is not an empty block") }
      return
    }
    guard let input = source.baseAddress, let output = destination.baseAddress else {
      throw CodecError("LZ4 block is empty, expected \(destination.count) bytes")
    }
    let written = LZ4_decompress_safe(
      input.assumingMemoryBound(to: CChar.self), output.assumingMemoryBound(to: CChar.self),
      Int32(source.count), Int32(destination.count))
    guard written == Int32(destination.count) else {
      throw CodecError(
        written < 0
          ? "malformed LZ4 block (\(source.count) bytes)"
          : "LZ4 block decodes to \(written) bytes, expected \(destination.count)")
    }
  }

  /// The most bytes `compressBlock` may write for `count` input bytes.
  public static func compressBound(_ count: Int) -> Int { Int(LZ4_compressBound(Int32(clamping: count))) }

  /// Compresses `source` as one raw LZ4 block into `destination` (at least
  /// `compressBound(source.count)` bytes); returns the bytes written.
  public static func compressBlock(
    _ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer
  ) -> Int {
    precondition(source.count <= maxBlock && destination.count >= compressBound(source.count))
    let empty: UInt8 = 0
    return withUnsafePointer(to: empty) { fallback in
      let input = source.baseAddress ?? UnsafeRawPointer(fallback)
      return Int(
        LZ4_compress_default(
          input.assumingMemoryBound(to: CChar.self),
          destination.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(source.count),
          Int32(clamping: destination.count)))
    }
  }

  /// One raw LZ4 block of `source`.
  public static func compress(_ source: UnsafeRawBufferPointer) -> [UInt8] {
    var output = [UInt8](repeating: 0, count: compressBound(source.count))
    let count = output.withUnsafeMutableBytes { compressBlock(source, into: $0) }
    output.removeLast(output.count - count)
    return output
  }

  // MARK: - HDF5 framing (filter 32004)

  /// Whether `source` starts with an HDF5 LZ4 header announcing `size` bytes:
  /// 8 bytes big-endian total size, then 4 bytes big-endian block size.
  public static func hasFramedHeader(_ source: UnsafeRawBufferPointer, size: Int) -> Bool {
    guard source.count >= 12 else { return false }
    return BigEndian.uint64(source, 0) == UInt64(size) && BigEndian.uint32(source, 8) > 0
  }

  /// Decompresses the HDF5 LZ4 filter's framing: the 12-byte header, then per
  /// block of `block size` bytes (the last one shorter) a 4-byte big-endian
  /// length and that many bytes, LZ4-compressed, or stored as they are when the
  /// length equals the block's size.
  public static func decompressFramed(
    _ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer
  ) throws(CodecError) {
    guard hasFramedHeader(source, size: destination.count) else {
      throw CodecError("no HDF5 LZ4 header announcing \(destination.count) bytes")
    }
    let blockSize = Int(BigEndian.uint32(source, 8))
    var offset = 12
    var written = 0
    while written < destination.count {
      let size = min(blockSize, destination.count - written)
      guard source.count - offset >= 4 else {
        throw CodecError("LZ4 data ends before block at byte \(written)")
      }
      let length = Int(BigEndian.uint32(source, offset))
      offset += 4
      guard length <= source.count - offset else {
        throw CodecError("LZ4 block of \(length) bytes runs past the end of the data")
      }
      let input = UnsafeRawBufferPointer(rebasing: source[offset..<offset + length])
      let output = UnsafeMutableRawBufferPointer(rebasing: destination[written..<written + size])
      if length == size {
        output.copyMemory(from: input)
      } else {
        try decompressBlock(input, into: output)
      }
      offset += length
      written += size
    }
    guard offset == source.count else {
      throw CodecError("\(source.count - offset) bytes left after the last LZ4 block")
    }
  }

  /// The HDF5 LZ4 filter's framing of `source`, in blocks of `blockSize` bytes.
  public static func compressFramed(_ source: UnsafeRawBufferPointer, blockSize: Int = 1 << 20) -> [UInt8] {
    precondition(blockSize > 0 && blockSize <= Int(UInt32.max))
    var output = BigEndian.bytes(UInt64(source.count), 8) + BigEndian.bytes(UInt64(blockSize), 4)
    var scratch = [UInt8](repeating: 0, count: compressBound(blockSize))
    var offset = 0
    while offset < source.count {
      let block = UnsafeRawBufferPointer(rebasing: source[offset..<min(source.count, offset + blockSize)])
      let count = scratch.withUnsafeMutableBytes { compressBlock(block, into: $0) }
      if count >= block.count {
        output += BigEndian.bytes(UInt64(block.count), 4)
        output += block
      } else {
        output += BigEndian.bytes(UInt64(count), 4)
        output += scratch[0..<count]
      }
      offset += block.count
    }
    return output
  }

  /// Decodes either form: the HDF5 framing when `source` starts with its header
  /// for `destination.count` bytes, a raw LZ4 block otherwise.
  public static func decompress(
    _ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer
  ) throws(CodecError) {
    guard hasFramedHeader(source, size: destination.count) else {
      try decompressBlock(source, into: destination)
      return
    }
    do throws(CodecError) {
      try decompressFramed(source, into: destination)
    } catch let framed {
      // A raw block that happens to start like a header: try it as one, but
      // report the framing's error if that fails too.
      do throws(CodecError) { try decompressBlock(source, into: destination) } catch { throw framed }
    }
  }
}

/// Big-endian integers in byte buffers (the HDF5 filters' headers).
public enum BigEndian {
  public static func uint64(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
    UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
  }
  public static func uint32(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
    UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
  }
  /// The low `count` bytes of `value`, most significant first.
  public static func bytes(_ value: UInt64, _ count: Int) -> [UInt8] {
    (0..<count).reversed().map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
  }
}
