#if canImport(Glibc)
  import Glibc
#endif

/// The deterministic content of `generate` frames, so any sink can verify every byte.
///
/// A frame of `size` bytes is a pseudo-random pattern that depends only on the
/// seed and the size (SplitMix64, little-endian), with its first 16 bytes replaced
/// by the series number and the frame number (each 64-bit little-endian, XORed
/// into the pattern). The pattern is made once per stage and copied into each
/// frame, as a detector's DMA would fill a buffer.
public struct GeneratedContent: Sendable {
  public let seed: UInt64
  public let pattern: [UInt8]

  public init(seed: UInt64, size: Int) {
    self.seed = seed
    var state = seed
    var bytes = [UInt8](repeating: 0, count: size)
    bytes.withUnsafeMutableBytes { buffer in
      var offset = 0
      while offset < size {
        var word = Self.splitmix(&state).littleEndian
        let count = min(8, size - offset)
        withUnsafeBytes(of: &word) { source in
          buffer.baseAddress!.advanced(by: offset).copyMemory(from: source.baseAddress!, byteCount: count)
        }
        offset += count
      }
    }
    pattern = bytes
  }

  static func splitmix(_ state: inout UInt64) -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// Writes the content of (series, frame) into `buffer`, which has the pattern's size.
  public func fill(_ buffer: UnsafeMutableRawBufferPointer, series: Int, frame: Int) {
    pattern.withUnsafeBytes { buffer.copyMemory(from: $0) }
    stamp(buffer, series: series, frame: frame)
  }

  /// XORs the series and frame numbers into the first 16 bytes (fewer if the
  /// buffer is shorter). Per frame: no array, no loop over bytes when all 16 fit.
  private func stamp(_ buffer: UnsafeMutableRawBufferPointer, series: Int, frame: Int) {
    let values = (UInt64(truncatingIfNeeded: series), UInt64(truncatingIfNeeded: frame))
    guard let base = buffer.baseAddress else { return }
    if buffer.count >= 16 {
      let first = base.loadUnaligned(fromByteOffset: 0, as: UInt64.self) ^ values.0.littleEndian
      let second = base.loadUnaligned(fromByteOffset: 8, as: UInt64.self) ^ values.1.littleEndian
      base.storeBytes(of: first, toByteOffset: 0, as: UInt64.self)
      base.storeBytes(of: second, toByteOffset: 8, as: UInt64.self)
      return
    }
    for byte in 0..<buffer.count {
      let value = byte < 8 ? values.0 : values.1
      buffer[byte] ^= UInt8(truncatingIfNeeded: value >> (8 * UInt64(byte % 8)))
    }
  }

  /// True when `bytes` are exactly the content of (series, frame).
  public func verify(_ bytes: UnsafeRawBufferPointer, series: Int, frame: Int) -> Bool {
    guard bytes.count == pattern.count else { return false }
    let expected = UnsafeMutableRawBufferPointer.allocate(byteCount: max(16, pattern.count), alignment: 8)
    defer { expected.deallocate() }
    let head = UnsafeMutableRawBufferPointer(rebasing: expected[0..<min(16, pattern.count)])
    pattern.withUnsafeBytes { head.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<head.count])) }
    stamp(head, series: series, frame: frame)
    guard memcmp(head.baseAddress!, bytes.baseAddress!, head.count) == 0 else { return false }
    return pattern.withUnsafeBytes {
      memcmp($0.baseAddress! + head.count, bytes.baseAddress! + head.count, pattern.count - head.count) == 0
    }
  }
}
