import HidraCodec
import HidraRuntime
import NIOCore

/// One image a simplon-monitor forward holds: the frame's payload, untouched
/// (still compressed), and where its pixels are in it and how they are encoded.
/// Made on the stage's thread when the frame arrives (cheap checks only);
/// decoded into a TIFF on a server thread when a client asks for it.
struct MonitorImage: Sendable {
  enum Encoding: Sendable, Equatable {
    case raw
    /// A raw LZ4 block, or the HDF5 LZ4 framing.
    case lz4
    /// Bitshuffle+LZ4 of elements of this many bytes (with or without the HDF5 header).
    case bitshuffleLZ4(elementSize: Int)
  }

  /// A frame that cannot be served, and why (counted under `kind`).
  struct Rejection: Error {
    var kind: String
    var message: String
    init(_ kind: String, _ message: String) {
      self.kind = kind
      self.message = message
    }
  }

  /// What a series' start says about its images, used when an image's own
  /// metadata lacks its shape or type (stream v1 `x_pixels_in_detector`,
  /// `y_pixels_in_detector`, `bit_depth_image`; stream v2 `image_size_x`,
  /// `image_size_y`, `image_dtype`).
  struct SeriesInfo: Sendable {
    var shape: [Int]?
    var dtype: String?

    init(start: Frame) {
      let attributes = start.meta.attributes
      let x = (attributes["x_pixels_in_detector"] ?? attributes["image_size_x"]).flatMap { Int($0) }
      let y = (attributes["y_pixels_in_detector"] ?? attributes["image_size_y"]).flatMap { Int($0) }
      if let x, let y { shape = [x, y] }
      if let dtype = attributes["image_dtype"] {
        self.dtype = dtype
      } else if let bits = attributes["bit_depth_image"].flatMap({ Int($0) }), [8, 16, 32].contains(bits) {
        dtype = "uint\(bits)"
      }
    }
  }

  let id: UInt64
  let series: Int
  let frame: Int
  let createdNanos: UInt64
  let layout: TIFF.Layout
  let encoding: Encoding
  /// The pixels are big-endian (a CBOR typed array with a big-endian tag).
  let bigEndian: Bool
  let payload: Payload
  /// The encoded pixels within `payload`.
  let range: Range<Int>

  /// Bytes this image keeps alive.
  var byteCount: Int { payload.count }

  /// Largest image served (the TIFF's offsets are 32-bit).
  static let maxPixelBytes = Int(UInt32.max) - TIFF.headerSize

  init(_ frame: Frame, series info: SeriesInfo?) throws(Rejection) {
    let meta = frame.meta
    id = meta.id
    series = meta.series
    self.frame = meta.frame
    createdNanos = meta.createdNanos
    switch frame.parts.count {
    case 0: throw Rejection("empty-image", "image \(meta.series)/\(meta.frame) has no payload")
    case 1: payload = frame.parts[0]
    default:
      // A frame reassembled from several parts: one contiguous copy.
      let parts = frame.parts
      payload = Payload(count: frame.byteCount) { buffer in
        var offset = 0
        for part in parts {
          UnsafeMutableRawBufferPointer(rebasing: buffer[offset..<offset + part.count]).copyMemory(
            from: part.bytes)
          offset += part.count
        }
      }
    }
    var shape = meta.shape
    var dtype = meta.dtype
    var encodingName = meta.encoding
    var bigEndian = false
    var range = 0..<payload.count
    if meta.encoding == "cbor" || meta.contentType == "application/cbor" {
      let channel = try Self.cborChannel(payload.bytes)
      guard channel.dims.count == 2 || (channel.dims.count == 3 && channel.dims[0] == 1) else {
        throw Rejection(
          "bad-shape", "image \(meta.series)/\(meta.frame) has dimensions \(channel.dims), not 2")
      }
      shape = [channel.dims[channel.dims.count - 1], channel.dims[channel.dims.count - 2]]
      dtype = channel.dtype
      bigEndian = channel.bigEndian
      encodingName = channel.encoding
      range = channel.range
    }
    shape = shape ?? info?.shape
    dtype = dtype ?? info?.dtype
    if dtype == nil, encodingName.hasPrefix("bs"),
      let bits = Int(encodingName.dropFirst(2).prefix { $0.isNumber })
    {
      dtype = "uint\(bits)"
    }
    let label = "image \(meta.series)/\(meta.frame)"
    guard let shape, shape.count == 2, shape[0] > 0, shape[1] > 0 else {
      throw Rejection("no-shape", "\(label) has no usable [width, height] shape")
    }
    guard let dtype, let layout = TIFF.Layout(width: shape[0], height: shape[1], dtype: dtype) else {
      throw Rejection(
        "unsupported-dtype", "\(label): element type '\(dtype ?? "(none)")' cannot be served as a TIFF")
    }
    let (pixels, overflow) = shape[0].multipliedReportingOverflow(by: shape[1] * layout.bytesPerSample)
    guard !overflow, pixels <= Self.maxPixelBytes else {
      throw Rejection("too-large", "\(label): \(shape[0]) x \(shape[1]) pixels are too many to serve")
    }
    self.layout = layout
    self.bigEndian = bigEndian
    self.range = range
    switch encodingName {
    case "raw":
      guard range.count == layout.pixelBytes else {
        throw Rejection(
          "bad-size",
          "\(label): \(range.count) bytes for \(shape[0]) x \(shape[1]) \(dtype) (\(layout.pixelBytes))")
      }
      encoding = .raw
    case "lz4": encoding = .lz4
    case "bs8-lz4", "bs16-lz4", "bs32-lz4", "bs64-lz4":
      let size = Int(encodingName.dropFirst(2).prefix { $0.isNumber })! / 8
      guard layout.pixelBytes % size == 0 else {
        throw Rejection(
          "bad-size", "\(label): \(layout.pixelBytes) bytes are not whole \(size)-byte elements")
      }
      encoding = .bitshuffleLZ4(elementSize: size)
    default:
      throw Rejection("unsupported-encoding", "\(label): encoding '\(encodingName)' cannot be decoded")
    }
  }

  // MARK: - Decoding

  /// The image as the monitor's TIFF: the header, then the decoded pixels,
  /// written straight into the buffer that is sent (`reusing` one whose last
  /// response was sent, when given and large enough).
  func tiff(reusing spare: consuming ByteBuffer? = nil) throws -> ByteBuffer {
    let pixelBytes = layout.pixelBytes
    var buffer: ByteBuffer
    // Taken out of the optional, the spare is the only reference: `clear()` keeps its memory.
    if let reused = spare.take(), reused.capacity >= TIFF.headerSize + pixelBytes {
      buffer = consume reused
      buffer.clear()
    } else {
      buffer = ByteBufferAllocator().buffer(capacity: TIFF.headerSize + pixelBytes)
    }
    buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: TIFF.headerSize) { header in
      TIFF.writeHeader(into: header, layout: layout, series: series, frame: frame, nanos: createdNanos)
      return TIFF.headerSize
    }
    try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: pixelBytes) { space in
      try decodePixels(into: UnsafeMutableRawBufferPointer(rebasing: space[0..<pixelBytes]))
      return pixelBytes
    }
    return buffer
  }

  /// Decodes the pixels into `destination` (exactly `layout.pixelBytes`), little-endian.
  func decodePixels(into destination: UnsafeMutableRawBufferPointer) throws(CodecError) {
    let source = UnsafeRawBufferPointer(rebasing: payload.bytes[range])
    switch encoding {
    case .raw: destination.copyMemory(from: source)
    case .lz4: try LZ4.decompress(source, into: destination)
    case .bitshuffleLZ4(let size): try Bitshuffle.decompressLZ4(source, into: destination, elementSize: size)
    }
    withExtendedLifetime(payload) {}
    if bigEndian { Self.swapBytes(destination, size: layout.bytesPerSample) }
  }

  static func swapBytes(_ buffer: UnsafeMutableRawBufferPointer, size: Int) {
    switch size {
    case 2:
      for offset in stride(from: 0, to: buffer.count, by: 2) {
        let value = buffer.loadUnaligned(fromByteOffset: offset, as: UInt16.self)
        buffer.storeBytes(of: value.byteSwapped, toByteOffset: offset, as: UInt16.self)
      }
    case 4:
      for offset in stride(from: 0, to: buffer.count, by: 4) {
        let value = buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
        buffer.storeBytes(of: value.byteSwapped, toByteOffset: offset, as: UInt32.self)
      }
    default: break
    }
  }

  // MARK: - Stream v2

  /// RFC 8746 typed-array tags a TIFF can carry: element type and big-endianness.
  static let typedArrays: [UInt64: (String, Bool)] = [
    64: ("uint8", false), 68: ("uint8", false), 65: ("uint16", true), 69: ("uint16", false),
    66: ("uint32", true), 70: ("uint32", false), 72: ("int8", false), 73: ("int16", true),
    77: ("int16", false), 74: ("int32", true), 78: ("int32", false), 81: ("float32", true),
    85: ("float32", false),
  ]

  struct Channel {
    var dims: [Int]
    var dtype: String
    var bigEndian: Bool
    var encoding: String
    var range: Range<Int>
  }

  /// The first channel of a stream v2 image message: its dimensions (row-major),
  /// element type, compression and where its bytes are. Nothing is copied.
  static func cborChannel(_ bytes: UnsafeRawBufferPointer) throws(Rejection) -> Channel {
    var found: Channel?
    var problem: String?
    do {
      var reader = CBORReader(bytes)
      try reader.map { (reader, key) throws(CBORReader.Failure) in
        guard key == "data", found == nil, problem == nil else {
          try reader.skip()
          return
        }
        try reader.map { (reader, name) throws(CBORReader.Failure) in
          guard found == nil, problem == nil else {
            try reader.skip()
            return
          }
          let start = reader.offset
          guard try reader.tags().contains(40) else {
            reader.offset = start
            try reader.skip()
            problem = "channel '\(name)' is not a tag-40 multi-dimensional array"
            return
          }
          var dims: [Int] = []
          var channel: Channel?
          try reader.array { (reader, index) throws(CBORReader.Failure) in
            switch index {
            case 0:
              try reader.array { (reader, _) throws(CBORReader.Failure) in
                guard dims.count < 8 else { throw CBORReader.Failure("more than 8 dimensions") }
                guard let dim = Int(exactly: try reader.unsigned()) else {
                  throw CBORReader.Failure("huge dimension")
                }
                dims.append(dim)
              }
            case 1:
              let tags = try reader.tags()
              guard let (dtype, bigEndian) = tags.lazy.compactMap({ typedArrays[$0] }).first else {
                try reader.skip()
                problem = "channel '\(name)' has no supported typed-array tag (\(tags))"
                return
              }
              if tags.contains(56500) {
                var algorithm = ""
                var elementSize: UInt64 = 0
                var range: Range<Int>?
                try reader.array { (reader, index) throws(CBORReader.Failure) in
                  switch index {
                  case 0: algorithm = try reader.text()
                  case 1: elementSize = try reader.unsigned()
                  case 2: range = try reader.byteStringRange()
                  default: try reader.skip()
                  }
                }
                guard let range else { throw CBORReader.Failure("compressed array without its bytes") }
                switch algorithm {
                case "bslz4" where [1, 2, 4, 8].contains(elementSize):
                  channel = Channel(
                    dims: [], dtype: dtype, bigEndian: bigEndian, encoding: "bs\(elementSize * 8)-lz4",
                    range: range)
                case "lz4":
                  channel = Channel(
                    dims: [], dtype: dtype, bigEndian: bigEndian, encoding: "lz4", range: range)
                default:
                  problem =
                    "channel '\(name)': unknown compression '\(algorithm)' (element size \(elementSize))"
                }
              } else {
                let range = try reader.byteStringRange()
                channel = Channel(dims: [], dtype: dtype, bigEndian: bigEndian, encoding: "raw", range: range)
              }
            default: try reader.skip()
            }
          }
          if var channel {
            channel.dims = dims
            found = channel
          }
        }
      }
    } catch {
      throw Rejection("bad-cbor", "stream v2 image: \(error.description)")
    }
    if let problem { throw Rejection("unsupported-encoding", "stream v2 image: \(problem)") }
    guard let found else { throw Rejection("bad-cbor", "stream v2 image without a 'data' channel") }
    return found
  }
}

extension CBORReader {
  /// A definite-length byte string (tags allowed before it): where its bytes are.
  mutating func byteStringRange() throws(Failure) -> Range<Int> {
    _ = try tags()
    let head = try head()
    guard head.major == 2, let argument = head.argument else {
      throw Failure("expected a definite-length byte string, found major type \(head.major)")
    }
    let count = try length(argument, unit: 1)
    defer { offset += count }
    return offset..<offset + count
  }
}
