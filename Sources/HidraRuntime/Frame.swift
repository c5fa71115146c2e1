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
/// free-form attributes are `Details`, kept out of line and only when one of them
/// differs from its default; they read and write through the properties of the
/// same names (copy on write). Two measured reasons:
/// - a `Frame` is then 128 bytes, not 184, and Swift moves it with a few vector
///   moves instead of a call to `memcpy` (a frame is moved five to seven times
///   between a source and its consumer), over two cache lines instead of three;
/// - with all eleven fields inline, Swift built every `FrameMeta` in a
///   temporary and then copied it out and destroyed the temporary (a retain and
///   a release of every string and collection in it).
/// A source whose frames carry details (a stream's encoding and shape) pays one
/// small allocation per frame for them.
public struct FrameMeta: Sendable, Hashable, CustomReflectable {
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
  /// The details, when any differs from its default.
  private var boxed: Boxed

  /// The box, wrapped: with the class reference directly among the fields,
  /// Swift again built every `FrameMeta` in a temporary and copied it out.
  private struct Boxed: Sendable {
    var box: DetailsBox?
  }

  struct Details: Sendable, Hashable {
    var contentType = "application/octet-stream"
    var encoding = "raw"
    var shape: [Int]? = nil
    var dtype: String? = nil
    var attributes = [String: String]()

    static let defaults = Details()
  }

  /// `Details` on the heap. `@unchecked Sendable`: changed only through
  /// `details`, and only while this is its one reference.
  private final class DetailsBox: @unchecked Sendable {
    var details: Details
    init(_ details: Details) { self.details = details }
  }

  /// The payload's description and the attributes.
  var details: Details {
    get { boxed.box?.details ?? .defaults }
    _modify {
      if boxed.box == nil {
        boxed.box = DetailsBox(.defaults)
      } else if !isKnownUniquelyReferenced(&boxed.box!) {
        boxed.box = DetailsBox(boxed.box!.details)
      }
      yield &boxed.box!.details
    }
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
    contentType: borrowing String = "application/octet-stream", encoding: borrowing String = "raw",
    shape: borrowing [Int]? = nil, dtype: borrowing String? = nil, checksums: Checksums = Checksums(),
    attributes: borrowing [String: String] = .init()
  ) {
    // The defaults (what most sources leave) are not boxed.
    let isDefault =
      shape == nil && dtype == nil && attributes.isEmpty && encoding == "raw"
      && contentType == "application/octet-stream"
    let box =
      isDefault
      ? nil
      : DetailsBox(
        Details(
          contentType: copy contentType, encoding: copy encoding, shape: copy shape, dtype: copy dtype,
          attributes: copy attributes))
    self.id = id
    self.series = series
    self.frame = frame
    self.name = name
    self.createdNanos = createdNanos
    self.checksums = checksums
    self.boxed = Boxed(box: box)
  }

  // Equal when the values are, whether or not the details are boxed.
  public static func == (lhs: FrameMeta, rhs: FrameMeta) -> Bool {
    lhs.id == rhs.id && lhs.series == rhs.series && lhs.frame == rhs.frame && lhs.name == rhs.name
      && lhs.createdNanos == rhs.createdNanos && lhs.checksums == rhs.checksums
      && (lhs.boxed.box === rhs.boxed.box || lhs.details == rhs.details)
  }

  /// Shows the details as fields, not as a box (test failures, debugging).
  public var customMirror: Mirror {
    Mirror(
      self,
      children: [
        "id": id, "series": series, "frame": frame, "name": name, "createdNanos": createdNanos,
        "contentType": contentType, "encoding": encoding, "shape": shape as Any, "dtype": dtype as Any,
        "checksums": checksums.dictionary, "attributes": attributes,
      ], displayStyle: .struct)
  }

  public func hash(into hasher: inout Hasher) {
    hasher.combine(id)
    hasher.combine(series)
    hasher.combine(frame)
    hasher.combine(name)
    hasher.combine(createdNanos)
    hasher.combine(checksums)
    hasher.combine(details)
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
