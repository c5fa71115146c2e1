import CZeroMQ

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// One ZeroMQ message part (`zmq_msg_t`), owned by exactly one value.
///
/// `Message` is `~Copyable`: the `zmq_msg_t` lives in heap storage that the value owns, at an address
/// that never changes (libzmq forbids copying a `zmq_msg_t` by value), and `deinit` closes it
/// (`zmq_msg_close`). Passing a message to `Socket.send(_:more:)` (with a `Message`) consumes it.
///
/// ### Zero copy
/// - ``init(bytesNoCopy:release:)`` wraps caller memory without copying; the release closure runs once
///   libzmq no longer needs it.
/// - ``share()`` makes a second message that refers to the **same buffer** for messages larger than
///   libzmq's inline limit (33 bytes; `zmq_msg_copy` shares the reference-counted buffer), so one frame
///   can be fanned out to several sockets without copying. Small messages are copied, which is cheap.
/// - Within a process (`inproc://`) a received message has the sender's buffer.
///
/// Because buffers may be shared, write into a message (``withUnsafeMutableBytes(_:)``) only while it
/// is the sole owner of its buffer: after creating it and before sharing or sending it.
///
/// ### Threads
/// A message may be moved to another thread (it is `@unchecked Sendable`): ownership transfers with the
/// value, so only one thread at a time can use it. Shared buffers are reference-counted atomically by
/// libzmq, so the owners of shares of one buffer may live on different threads.
public struct Message: ~Copyable, @unchecked Sendable {
  /// Heap storage for the `zmq_msg_t`; its address is stable for the life of the message.
  let pointer: UnsafeMutablePointer<zmq_msg_t>

  /// Creates an empty message (`zmq_msg_init`), e.g. as an empty frame of a multipart message.
  public init() {
    pointer = .allocate(capacity: 1)
    zmq_msg_init(pointer)
  }

  /// Creates a message of `count` bytes whose contents are **uninitialized** (`zmq_msg_init_size`);
  /// fill them with ``withUnsafeMutableBytes(_:)`` before sending.
  ///
  /// Traps if libzmq cannot allocate the buffer, like a failing Swift allocation.
  public init(uninitializedCount count: Int) {
    precondition(count >= 0, "negative message size \(count)")
    pointer = .allocate(capacity: 1)
    guard zmq_msg_init_size(pointer, count) == 0 else {
      fatalError("zmq_msg_init_size(\(count)): \(ZMQError.last(""))")
    }
  }

  /// Creates a message holding a copy of `bytes` (`[UInt8]`, `ArraySlice<UInt8>`, `String.UTF8View`,
  /// an `UnsafeRawBufferPointer`, ...).
  public init(_ bytes: some Collection<UInt8>) {
    let count = bytes.count
    self.init(uninitializedCount: count)
    guard count > 0 else { return }
    let destination = UnsafeMutableRawBufferPointer(start: zmq_msg_data(pointer), count: count)
    let copied: Void? = bytes.withContiguousStorageIfAvailable { source in
      destination.copyMemory(from: UnsafeRawBufferPointer(source))
    }
    if copied == nil {
      destination.copyBytes(from: bytes)
    }
  }

  /// Creates a message holding a copy of the UTF-8 bytes of `string` (no terminating NUL).
  public init(_ string: String) {
    self.init(string.utf8)
  }

  /// Creates a message that refers to `buffer` without copying it (`zmq_msg_init_data`).
  ///
  /// The caller must keep `buffer` valid and unmodified until `release` is called. `release` is called
  /// exactly once, when the last message referring to the buffer is closed: this message, its shares
  /// (``share()``), or the copies libzmq holds while sending. It runs on whichever thread closes the
  /// last reference, possibly a libzmq I/O thread, so it must be quick and must not call into
  /// ZeroMQ; it typically frees or recycles the buffer.
  ///
  /// Traps if libzmq cannot allocate its reference counter (`ENOMEM`), after calling `release`.
  public init(bytesNoCopy buffer: UnsafeMutableRawBufferPointer, release: @escaping @Sendable () -> Void) {
    pointer = .allocate(capacity: 1)
    let hint = Unmanaged.passRetained(ReleaseCallback(release)).toOpaque()
    let rc = zmq_msg_init_data(
      pointer, buffer.baseAddress, buffer.count,
      { _, hint in
        // Called by libzmq exactly once per zmq_msg_init_data, from the thread dropping the last
        // reference; balances the passRetained above.
        Unmanaged<ReleaseCallback>.fromOpaque(hint!).takeRetainedValue().release()
      },
      hint
    )
    guard rc == 0 else {
      let error = ZMQError.last("zmq_msg_init_data")
      Unmanaged<ReleaseCallback>.fromOpaque(hint).takeRetainedValue().release()
      fatalError("\(error)")
    }
  }

  deinit {
    zmq_msg_close(pointer)
    pointer.deallocate()
  }

  /// Closes the message now (otherwise it is closed when the value is dropped).
  public consuming func close() {
    // Consuming `self` ends its lifetime here, which runs `deinit`.
  }

  /// The size of the message in bytes (`zmq_msg_size`).
  public var count: Int {
    zmq_msg_size(pointer)
  }

  /// Whether the message has no bytes.
  public var isEmpty: Bool {
    count == 0
  }

  /// For a received part, whether more parts of the same multipart message follow (`zmq_msg_more`).
  /// Always `false` for messages that were not received.
  public var hasMore: Bool {
    zmq_msg_more(pointer) != 0
  }

  /// Calls `body` with the message's bytes, valid only during the call (`zmq_msg_data`).
  public func withUnsafeBytes<Result: ~Copyable, Failure: Error>(
    _ body: (UnsafeRawBufferPointer) throws(Failure) -> Result
  ) throws(Failure) -> Result {
    try body(UnsafeRawBufferPointer(start: zmq_msg_data(pointer), count: zmq_msg_size(pointer)))
  }

  /// Calls `body` with the message's bytes for writing, valid only during the call.
  ///
  /// Writes are seen by every share of the buffer (``share()``), so write only into a message that
  /// has not been shared or sent.
  public mutating func withUnsafeMutableBytes<Result: ~Copyable, Failure: Error>(
    _ body: (UnsafeMutableRawBufferPointer) throws(Failure) -> Result
  ) throws(Failure) -> Result {
    try body(UnsafeMutableRawBufferPointer(start: zmq_msg_data(pointer), count: zmq_msg_size(pointer)))
  }

  /// A copy of the message's bytes.
  public var bytes: [UInt8] {
    withUnsafeBytes { Array($0) }
  }

  /// The message's bytes decoded as UTF-8 (invalid sequences become U+FFFD).
  public var string: String {
    withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
  }

  /// Returns a second message with the same content (`zmq_msg_copy`).
  ///
  /// For messages larger than 33 bytes no bytes are copied: both messages refer to the same
  /// reference-counted buffer, which is freed (or released, see ``init(bytesNoCopy:release:)``) when
  /// the last of them is closed. This is how one payload is sent to several sockets without copying.
  /// The returned message's ``hasMore`` flag is not meaningful.
  public func share() -> Message {
    let copy = Message()
    let rc = zmq_msg_copy(copy.pointer, pointer)
    precondition(rc == 0, "zmq_msg_copy: \(ZMQError.last(""))")
    return copy
  }
}

/// Boxes the release closure of a zero-copy message so that a C callback can call it.
private final class ReleaseCallback {
  let release: @Sendable () -> Void

  init(_ release: @escaping @Sendable () -> Void) {
    self.release = release
  }
}
