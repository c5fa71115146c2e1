/// The payload parts of a frame, in order.
///
/// Almost every frame has exactly one part. That part is kept inline, so making
/// and dropping a frame allocates and frees no array: one allocation and one
/// cross-thread free less per frame. Frames of several parts (chunked files,
/// multipart stream messages) keep an array. Reads and writes like `[Payload]`.
public struct PayloadParts: RandomAccessCollection, RangeReplaceableCollection, ExpressibleByArrayLiteral,
  Sendable
{
  private enum Storage: Sendable {
    case one(Payload)
    case many([Payload])
  }
  private var storage: Storage

  public init() { storage = .many([]) }

  public init(_ payload: Payload) { storage = .one(payload) }

  public init(_ parts: [Payload]) { storage = parts.count == 1 ? .one(parts[0]) : .many(parts) }

  public init(arrayLiteral elements: Payload...) { self.init(elements) }

  public init<S: Sequence>(_ elements: S) where S.Element == Payload { self.init(Array(elements)) }

  /// The bytes of the one part; nil when there are several parts, or none.
  /// They stay valid while this value (or a copy of it) holds the part.
  public var singlePartBytes: UnsafeRawBufferPointer? {
    guard case .one(let payload) = storage else { return nil }
    return payload.bytes
  }

  public var startIndex: Int { 0 }
  public var endIndex: Int {
    switch storage {
    case .one: 1
    case .many(let parts): parts.count
    }
  }

  public subscript(position: Int) -> Payload {
    switch storage {
    case .one(let payload):
      precondition(position == 0, "PayloadParts index out of range")
      return payload
    case .many(let parts): return parts[position]
    }
  }

  public mutating func replaceSubrange<C: Collection>(_ range: Range<Int>, with newElements: C)
  where C.Element == Payload {
    var parts = Array(self)
    storage = .many([])  // let go of the old storage before changing the copy
    parts.replaceSubrange(range, with: newElements)
    self = PayloadParts(parts)
  }

  public mutating func append(_ payload: Payload) {
    switch storage {
    case .one(let first): storage = .many([first, payload])
    case .many(var parts):
      storage = .many([])
      parts.append(payload)
      self = PayloadParts(parts)
    }
  }
}
