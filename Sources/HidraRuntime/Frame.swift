/// What a frame is: the start of a series, an image or file, or the end of a series.
public enum FrameKind: String, Sendable, Hashable {
  /// Opens a series; carries the detector's header (if any) as its payload and
  /// `FrameMeta.attributes`. Never dropped; replayed to edges that join late.
  case seriesStart = "series-start"
  /// One image or file.
  case data
  /// Closes a series. Never dropped.
  case seriesEnd = "series-end"

  public var isControl: Bool { self != .data }
}

/// Everything known about a frame besides its bytes.
///
/// What the payload is (content type, encoding, shape, element type) and the
/// free-form attributes live in a struct of their own (`Details`), read and
/// written through the properties of the same names. With all eleven fields in
/// one struct, Swift built every `FrameMeta` in a temporary and then copied it
/// out and destroyed the temporary (each a retain or release of every string,
/// array and dictionary in it): about 350 of the 1,450 instructions a source
/// thread spent per frame in `hop` (`bench/instructions.sh`). Nested, it is built
/// in place.
public struct FrameMeta: Sendable, Hashable {
  /// Unique within one run of a source, increasing.
  public var id: UInt64
  public var series: Int
  /// Frame number within the series (data frames), starting at 0.
  public var frame: Int
  /// The frame's name or relative path, e.g. `series_1/frame_000042.raw`.
  public var name: String
  /// When the source made or received the frame (nanoseconds since the epoch).
  public var createdNanos: UInt64
  /// Digests by algorithm name (`xxh3`, `sha256`, ...), lowercase hex.
  public var checksums: Checksums
  /// The payload's description and the attributes.
  var details: Details

  struct Details: Sendable, Hashable {
    var contentType: String
    var encoding: String
    var shape: [Int]?
    var dtype: String?
    var attributes: [String: String]
  }

  /// MIME-like type of the payload, e.g. `application/octet-stream`.
  public var contentType: String {
    get { details.contentType }
    _modify { yield &details.contentType }
  }
  /// How the payload is encoded: `raw`, `lz4`, `bs16-lz4`, `bs32-lz4`, ...
  public var encoding: String {
    get { details.encoding }
    _modify { yield &details.encoding }
  }
  /// Image shape `[width, height]` and element type, when known.
  public var shape: [Int]? {
    get { details.shape }
    _modify { yield &details.shape }
  }
  public var dtype: String? {
    get { details.dtype }
    _modify { yield &details.dtype }
  }
  /// Free-form attributes.
  public var attributes: [String: String] {
    get { details.attributes }
    _modify { yield &details.attributes }
  }

  public init(
    id: UInt64 = 0, series: Int = 0, frame: Int = 0, name: String = "", createdNanos: UInt64 = 0,
    contentType: String = "application/octet-stream", encoding: String = "raw", shape: [Int]? = nil,
    dtype: String? = nil, checksums: Checksums = Checksums(), attributes: [String: String] = .init()
  ) {
    self.id = id
    self.series = series
    self.frame = frame
    self.name = name
    self.createdNanos = createdNanos
    self.checksums = checksums
    self.details = Details(
      contentType: contentType, encoding: encoding, shape: shape, dtype: dtype, attributes: attributes)
  }
}

/// A unit that flows along edges: metadata plus payload parts.
///
/// Copying a `Frame` copies the metadata and shares the payloads.
public struct Frame: Sendable {
  public var kind: FrameKind
  public var meta: FrameMeta
  public var parts: PayloadParts {
    didSet { byteCount = Self.count(parts) }
  }
  /// Payload bytes over all parts (kept, not summed again on every queue operation).
  public private(set) var byteCount: Int
  /// This copy's obligation to confirm the frame to its source, when the source
  /// asked (`track`); see `Ledger`. Nodes that make a new frame from a received
  /// one start from the received frame (`var out = frame`) so it carries over.
  ///
  /// Initialized here, not in `init`: assigning nil there made the compiler
  /// build every frame twice and copy one (a copy and a destroy of the whole
  /// frame, every reference retained and released, for each frame made).
  public internal(set) var receipt: Receipt? = nil

  public init(kind: FrameKind, meta: FrameMeta, parts: PayloadParts = []) {
    self.kind = kind
    self.meta = meta
    self.parts = parts
    self.byteCount = Self.count(parts)
  }

  public init(kind: FrameKind, meta: FrameMeta, parts: [Payload]) {
    self.init(kind: kind, meta: meta, parts: PayloadParts(parts))
  }

  private static func count(_ parts: PayloadParts) -> Int {
    parts.singlePartBytes?.count ?? parts.reduce(0) { $0 + $1.count }
  }

  public static func seriesStart(
    _ series: Int, id: UInt64 = 0, header: Payload? = nil, attributes: [String: String] = [:]
  )
    -> Frame
  {
    Frame(
      kind: .seriesStart,
      meta: FrameMeta(id: id, series: series, contentType: "application/json", attributes: attributes),
      parts: header.map { [$0] } ?? [])
  }

  public static func seriesEnd(_ series: Int, id: UInt64 = 0, frames: Int) -> Frame {
    Frame(kind: .seriesEnd, meta: FrameMeta(id: id, series: series, attributes: ["frames": String(frames)]))
  }
}
