#if canImport(Glibc)
  import Glibc
#endif

/// The TIFF an EIGER's monitor interface serves, as OnDA Monitor reads it: an
/// uncompressed, little-endian, single-strip grayscale baseline TIFF, with the
/// series and frame ids at byte 42 and the frame's time at byte 162 (where the
/// client reads them), the IFD at byte `ifdOffset` and the pixels at byte
/// `headerSize`.
public enum TIFF {
  /// How samples are to be read (the TIFF SampleFormat tag).
  public enum SampleFormat: UInt16, Sendable {
    case unsigned = 1
    case signed = 2
    case float = 3
  }

  /// One image's layout.
  public struct Layout: Sendable, Hashable {
    public var width: Int
    public var height: Int
    /// 1, 2 or 4.
    public var bytesPerSample: Int
    public var format: SampleFormat

    public init(width: Int, height: Int, bytesPerSample: Int, format: SampleFormat) {
      self.width = width
      self.height = height
      self.bytesPerSample = bytesPerSample
      self.format = format
    }

    /// The layout of a dtype (`uint8`, `uint16`, `uint32`, `int8`, `int16`,
    /// `int32`, `float32`), or nil for one a TIFF reader cannot take.
    public init?(width: Int, height: Int, dtype: String) {
      guard let (size, format) = Self.dtypes[dtype] else { return nil }
      self.init(width: width, height: height, bytesPerSample: size, format: format)
    }

    static let dtypes: [String: (Int, SampleFormat)] = [
      "uint8": (1, .unsigned), "uint16": (2, .unsigned), "uint32": (4, .unsigned), "int8": (1, .signed),
      "int16": (2, .signed), "int32": (4, .signed), "float32": (4, .float),
    ]

    public var pixelBytes: Int { width * height * bytesPerSample }
  }

  /// Where the IFD starts (after the bytes OnDA reads at 42 and 162).
  public static let ifdOffset = 256
  /// Where the pixels start: the header's size.
  public static let headerSize = 512
  /// Offsets OnDA reads.
  public static let idOffset = 42
  public static let timeOffset = 162
  /// The length of `timestamp(nanos:)`.
  public static let timeLength = 29

  /// Writes the `headerSize` bytes before the pixels into `header`.
  public static func writeHeader(
    into header: UnsafeMutableRawBufferPointer, layout: Layout, series: Int, frame: Int, nanos: UInt64
  ) {
    precondition(header.count >= headerSize)
    precondition(layout.width > 0 && layout.height > 0 && layout.pixelBytes <= Int(UInt32.max))
    let base = UnsafeMutableRawBufferPointer(rebasing: header[0..<headerSize])
    base.initializeMemory(as: UInt8.self, repeating: 0)
    func u16(_ offset: Int, _ value: UInt16) {
      base.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt16.self)
    }
    func u32(_ offset: Int, _ value: UInt32) {
      base.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt32.self)
    }
    base[0] = UInt8(ascii: "I")
    base[1] = UInt8(ascii: "I")
    u16(2, 42)
    u32(4, UInt32(ifdOffset))
    // OnDA: four little-endian int32 at 42: series, -, -, frame.
    u32(idOffset, UInt32(truncatingIfNeeded: Int32(truncatingIfNeeded: series)))
    u32(idOffset + 12, UInt32(truncatingIfNeeded: Int32(truncatingIfNeeded: frame)))
    for (index, byte) in timestamp(nanos: nanos).utf8.enumerated() { base[timeOffset + index] = byte }

    let rationals = ifdOffset + 2 + 14 * 12 + 4  // XResolution, YResolution: 1/1
    u32(rationals, 1)
    u32(rationals + 4, 1)
    u32(rationals + 8, 1)
    u32(rationals + 12, 1)
    // Entries in ascending tag order: (tag, type, value); type 3 SHORT, 4 LONG, 5 RATIONAL.
    let entries: [(UInt16, UInt16, UInt32)] = [
      (256, 4, UInt32(layout.width)),  // ImageWidth
      (257, 4, UInt32(layout.height)),  // ImageLength
      (258, 3, UInt32(layout.bytesPerSample * 8)),  // BitsPerSample
      (259, 3, 1),  // Compression: none
      (262, 3, 1),  // PhotometricInterpretation: BlackIsZero
      (273, 4, UInt32(headerSize)),  // StripOffsets
      (277, 3, 1),  // SamplesPerPixel
      (278, 4, UInt32(layout.height)),  // RowsPerStrip
      (279, 4, UInt32(layout.pixelBytes)),  // StripByteCounts
      (282, 5, UInt32(rationals)),  // XResolution
      (283, 5, UInt32(rationals + 8)),  // YResolution
      (284, 3, 1),  // PlanarConfiguration: contiguous
      (296, 3, 1),  // ResolutionUnit: none
      (339, 3, UInt32(layout.format.rawValue)),  // SampleFormat
    ]
    u16(ifdOffset, UInt16(entries.count))
    for (index, (tag, type, value)) in entries.enumerated() {
      let entry = ifdOffset + 2 + index * 12
      u16(entry, tag)
      u16(entry + 2, type)
      u32(entry + 4, 1)
      if type == 3 { u16(entry + 8, UInt16(value)) } else { u32(entry + 8, value) }
    }
    u32(ifdOffset + 2 + entries.count * 12, 0)  // no next IFD
  }

  /// `YYYY-MM-DDTHH:MM:SS.mmm+00:00` in UTC: exactly the form OnDA parses
  /// (milliseconds and an offset with a colon).
  public static func timestamp(nanos: UInt64) -> String {
    var seconds = time_t(nanos / 1_000_000_000)
    let millis = Int(nanos / 1_000_000 % 1000)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    func pad(_ value: Int32, _ width: Int) -> String {
      let digits = String(value)
      return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
    return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
      + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(millis), 3))+00:00"
  }
}
