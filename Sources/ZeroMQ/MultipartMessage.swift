import CZeroMQ

/// The ordered parts of one multipart ZeroMQ message, owned by exactly one value.
///
/// Swift arrays cannot hold `~Copyable` elements, so this is a small growable container of
/// ``Message`` values in storage it owns. Parts go in with `append(_:)` (consuming them)
/// and come out with ``remove(at:)`` or ``removeFirst()``, or are read in place with
/// ``withPart(at:_:)``. `deinit` closes the parts that are still inside.
///
/// ```swift
/// var frame = MultipartMessage()
/// frame.append(Message(headerBytes))
/// frame.append(payload)  // a Message, e.g. a zero-copy one
/// try socket.send(frame)
///
/// let received = try socket.receiveMultipart()
/// let header = received.withPart(at: 0) { $0.bytes }
/// ```
///
/// Like ``Message``, a `MultipartMessage` may be moved to another thread (`@unchecked Sendable`):
/// ownership transfers with the value.
public struct MultipartMessage: ~Copyable, @unchecked Sendable {
  private var storage: UnsafeMutablePointer<Message>
  private var capacity: Int

  /// The number of parts.
  public private(set) var count: Int

  /// Creates an empty container with room for `minimumCapacity` parts before it reallocates.
  public init(minimumCapacity: Int = 4) {
    capacity = Swift.max(minimumCapacity, 1)
    storage = .allocate(capacity: capacity)
    count = 0
  }

  deinit {
    storage.deinitialize(count: count)
    storage.deallocate()
  }

  /// Closes all parts now (otherwise they are closed when the value is dropped).
  public consuming func close() {
    // Consuming `self` ends its lifetime here, which runs `deinit`.
  }

  /// Whether there are no parts.
  public var isEmpty: Bool { count == 0 }

  /// The sum of the parts' sizes in bytes.
  public var byteCount: Int {
    var total = 0
    for index in 0..<count { total += storage[index].count }
    return total
  }

  /// Appends `part` as the last part, taking ownership of it.
  public mutating func append(_ part: consuming Message) {
    if count == capacity {
      let newCapacity = capacity * 2
      let newStorage = UnsafeMutablePointer<Message>.allocate(capacity: newCapacity)
      // Moves the Message values (each a pointer to its zmq_msg_t); the zmq_msg_t themselves stay put.
      newStorage.moveInitialize(from: storage, count: count)
      storage.deallocate()
      storage = newStorage
      capacity = newCapacity
    }
    (storage + count).initialize(to: part)
    count += 1
  }

  /// Appends a part holding a copy of `bytes`.
  public mutating func append(_ bytes: some Collection<UInt8>) {
    append(Message(bytes))
  }

  /// Appends a part holding a copy of the UTF-8 bytes of `string`.
  public mutating func append(_ string: String) {
    append(Message(string))
  }

  /// Calls `body` with the part at `index` (which must be in `0..<count`), borrowed for the call.
  public func withPart<Result: ~Copyable, Failure: Error>(
    at index: Int, _ body: (borrowing Message) throws(Failure) -> Result
  ) throws(Failure) -> Result {
    precondition(index >= 0 && index < count, "part index \(index) out of range 0..<\(count)")
    return try body(storage[index])
  }

  /// Removes and returns the part at `index` (which must be in `0..<count`); later parts move up.
  public mutating func remove(at index: Int) -> Message {
    precondition(index >= 0 && index < count, "part index \(index) out of range 0..<\(count)")
    let part = (storage + index).move()
    (storage + index).moveInitialize(from: storage + index + 1, count: count - index - 1)
    count -= 1
    return part
  }

  /// Removes and returns the first part; the container must not be empty.
  public mutating func removeFirst() -> Message {
    remove(at: 0)
  }

  /// Removes and closes all parts.
  public mutating func removeAll() {
    storage.deinitialize(count: count)
    count = 0
  }

  /// Returns a container whose parts are shares of these parts (see ``Message/share()``): parts larger
  /// than 33 bytes are not copied but refer to the same buffers.
  public func share() -> MultipartMessage {
    var copy = MultipartMessage(minimumCapacity: count)
    for index in 0..<count { copy.append(storage[index].share()) }
    return copy
  }

  /// The part at `index`, for the socket's send loop.
  func partPointer(at index: Int) -> UnsafeMutablePointer<zmq_msg_t> {
    storage[index].pointer
  }
}
