import CZeroMQ

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// A ZeroMQ socket (`zmq_socket`), owned by exactly one value and used by one thread at a time.
///
/// ### Ownership and threads
/// libzmq sockets are **not** thread-safe. `Socket` is `~Copyable`, so there is exactly one owner,
/// and `deinit` closes the socket (`zmq_close`; queued outgoing messages then linger, see
/// ``SocketOption/linger``). It is `@unchecked Sendable` only so that this single owner can be
/// *moved* to the thread that will use it: create it, configure it if you like, then hand it over,
/// e.g. through a box that the new thread empties, and do not touch it from the old thread again:
///
/// ```swift
/// final class Handoff: @unchecked Sendable {  // filled on one thread, emptied on the other
///   var socket: Socket?
///   init(_ socket: consuming Socket) { self.socket = socket }
/// }
/// let handoff = Handoff(try Socket(.pull, context: context))
/// Thread {
///   let socket = handoff.socket.take()!  // this thread owns it now
///   while let message = try? socket.receive() { ... }
/// }.start()                              // closed when `socket` goes out of scope
/// ```
///
/// The methods are not `mutating` because a socket is a handle: a libzmq object that changes state
/// behind it. Exclusive use comes from the single owner, not from Swift's `inout` rules. libzmq only
/// requires a full memory barrier when a socket moves between threads, which the hand-off provides.
///
/// ### Blocking, non-blocking and timeouts
/// - `send`/`receive` block until they can proceed, or fail with ``ZMQError/wouldBlock`` once the
///   ``SocketOption/sendTimeout``/``SocketOption/receiveTimeout`` expires, or with
///   ``ZMQError/terminated`` when the context is shut down (the usual way to stop a blocked thread).
/// - `trySend`/`tryReceive` never block: they return `false`/`nil` where the blocking call would
///   wait, and throw only real errors.
/// - **`EINTR` is retried**: when a signal interrupts a blocking call it is simply repeated (restarting
///   its timeout), so a message is never lost to a signal. Stop blocked threads with
///   ``ZMQContext/shutdown()`` or a timeout instead; Hidra handles signals outside ZeroMQ calls.
public struct Socket: ~Copyable, @unchecked Sendable {
  /// The `void *` from `zmq_socket`.
  let handle: UnsafeMutableRawPointer

  /// The context the socket belongs to; the socket keeps it alive.
  public let context: ZMQContext

  /// The socket's type.
  public let type: SocketType

  /// Creates a socket of `type` in `context` (`zmq_socket`).
  ///
  /// - Throws: ``ZMQError/terminated`` if the context was shut down, or e.g. `EMFILE` when libzmq's
  ///   socket limit is reached.
  public init(_ type: SocketType, context: ZMQContext) throws(ZMQError) {
    self.handle = try context.makeSocketHandle(type)
    self.context = context
    self.type = type
  }

  deinit {
    zmq_close(handle)
  }

  /// Closes the socket now (otherwise it is closed when the value is dropped).
  public consuming func close() {
    // Consuming `self` ends its lifetime here, which runs `deinit`.
  }

  // MARK: - Endpoints

  /// Accepts connections on `endpoint` (`zmq_bind`), e.g. `"inproc://frames"`,
  /// `"tcp://127.0.0.1:5555"` or `"tcp://127.0.0.1:*"` (a free port; see ``lastEndpoint()``).
  public func bind(_ endpoint: String) throws(ZMQError) {
    try check(retryingOnInterrupt { zmq_bind(handle, endpoint) }, "bind(\(endpoint))")
  }

  /// Connects to `endpoint` (`zmq_connect`). The connection is made, and remade after failures, in
  /// the background; messages sent meanwhile are queued (unless ``SocketOption/immediate`` is set).
  public func connect(_ endpoint: String) throws(ZMQError) {
    try check(retryingOnInterrupt { zmq_connect(handle, endpoint) }, "connect(\(endpoint))")
  }

  /// Stops accepting connections on `endpoint`, which must be the exact string that was bound or, for
  /// wildcard binds, the resolved ``lastEndpoint()`` (`zmq_unbind`).
  public func unbind(_ endpoint: String) throws(ZMQError) {
    try check(retryingOnInterrupt { zmq_unbind(handle, endpoint) }, "unbind(\(endpoint))")
  }

  /// Disconnects from `endpoint`, as it was passed to ``connect(_:)`` (`zmq_disconnect`).
  public func disconnect(_ endpoint: String) throws(ZMQError) {
    try check(retryingOnInterrupt { zmq_disconnect(handle, endpoint) }, "disconnect(\(endpoint))")
  }

  /// The endpoint of the last successful bind or connect (`ZMQ_LAST_ENDPOINT`), with the actual port
  /// of a `tcp://127.0.0.1:*` bind, e.g. `"tcp://127.0.0.1:41234"`.
  public func lastEndpoint() throws(ZMQError) -> String {
    try option(.lastEndpoint)
  }

  // MARK: - Options

  /// Sets an `int` option, e.g. `try socket.setOption(.sendHighWaterMark, 10)`.
  public func setOption(_ option: SocketOption<Int32>, _ value: Int32) throws(ZMQError) {
    var value = value
    try setRawOption(option, &value, MemoryLayout<Int32>.size)
  }

  /// Sets an `int64_t` option, e.g. `try socket.setOption(.maxMessageSize, 64 << 20)`.
  public func setOption(_ option: SocketOption<Int64>, _ value: Int64) throws(ZMQError) {
    var value = value
    try setRawOption(option, &value, MemoryLayout<Int64>.size)
  }

  /// Sets a flag option (an `int` that is 0 or 1), e.g. `try socket.setOption(.immediate, true)`.
  public func setOption(_ option: SocketOption<Bool>, _ value: Bool) throws(ZMQError) {
    var value: Int32 = value ? 1 : 0
    try setRawOption(option, &value, MemoryLayout<Int32>.size)
  }

  /// Sets a text option to the UTF-8 bytes of `value`, without a terminating NUL.
  public func setOption(_ option: SocketOption<String>, _ value: String) throws(ZMQError) {
    var bytes = Array(value.utf8)
    try setRawOption(option, &bytes, bytes.count)
  }

  /// Sets a binary option.
  public func setOption(_ option: SocketOption<[UInt8]>, _ value: [UInt8]) throws(ZMQError) {
    var bytes = value
    try setRawOption(option, &bytes, bytes.count)
  }

  /// Reads an `int` option.
  public func option(_ option: SocketOption<Int32>) throws(ZMQError) -> Int32 {
    var value: Int32 = 0
    _ = try getRawOption(option, &value, MemoryLayout<Int32>.size)
    return value
  }

  /// Reads an `int64_t` option.
  public func option(_ option: SocketOption<Int64>) throws(ZMQError) -> Int64 {
    var value: Int64 = 0
    _ = try getRawOption(option, &value, MemoryLayout<Int64>.size)
    return value
  }

  /// Reads a flag option.
  public func option(_ option: SocketOption<Bool>) throws(ZMQError) -> Bool {
    var value: Int32 = 0
    _ = try getRawOption(option, &value, MemoryLayout<Int32>.size)
    return value != 0
  }

  /// Reads a text option (up to the first NUL).
  public func option(_ option: SocketOption<String>) throws(ZMQError) -> String {
    let bytes = try self.option(
      SocketOption<[UInt8]>(
        rawValue: option.rawValue, name: option.name,
        maximumLength: option.maximumLength))
    return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
  }

  /// Reads a binary option.
  public func option(_ option: SocketOption<[UInt8]>) throws(ZMQError) -> [UInt8] {
    var buffer = [UInt8](repeating: 0, count: option.maximumLength)
    let size = try getRawOption(option, &buffer, buffer.count)
    return Array(buffer.prefix(size))
  }

  /// Subscribes a SUB socket to messages whose first part starts with `prefix`; an empty prefix
  /// subscribes to everything (`ZMQ_SUBSCRIBE`). Subscriptions reach publishers asynchronously, so
  /// messages published right after subscribing may be missed.
  public func subscribe(_ prefix: some Collection<UInt8>) throws(ZMQError) {
    try setOption(.subscribe, Array(prefix))
  }

  /// Subscribes to messages whose first part starts with the UTF-8 bytes of `prefix`.
  public func subscribe(_ prefix: String) throws(ZMQError) {
    try subscribe(prefix.utf8)
  }

  /// Removes one earlier subscription to `prefix` (`ZMQ_UNSUBSCRIBE`).
  public func unsubscribe(_ prefix: some Collection<UInt8>) throws(ZMQError) {
    try setOption(.unsubscribe, Array(prefix))
  }

  /// Removes one earlier subscription to the UTF-8 bytes of `prefix`.
  public func unsubscribe(_ prefix: String) throws(ZMQError) {
    try unsubscribe(prefix.utf8)
  }

  /// Makes this socket a CURVE server with the secret key of `keyPair` (`ZMQ_CURVE_SERVER`,
  /// `ZMQ_CURVE_SECRETKEY`). Clients must know `keyPair.publicKey`. Call before ``bind(_:)``.
  public func setCurveServer(keyPair: CurveKeyPair) throws(ZMQError) {
    try setOption(.curveServer, true)
    try setOption(.curveSecretKey, keyPair.secretKey)
  }

  /// Makes this socket a CURVE client of the server whose public key is `serverKey`, authenticating
  /// itself with `keyPair` (`ZMQ_CURVE_SERVERKEY`, `ZMQ_CURVE_PUBLICKEY`, `ZMQ_CURVE_SECRETKEY`).
  /// Call before ``connect(_:)``.
  public func setCurveClient(serverKey: String, keyPair: CurveKeyPair) throws(ZMQError) {
    try setOption(.curveServerKey, serverKey)
    try setOption(.curvePublicKey, keyPair.publicKey)
    try setOption(.curveSecretKey, keyPair.secretKey)
  }

  /// The socket's current readiness (`ZMQ_EVENTS`), without waiting.
  ///
  /// With ``fileDescriptor()`` this integrates a socket into another event loop: when the descriptor
  /// becomes readable, read `events()` and handle messages while it says so (the descriptor signals
  /// edges, not levels).
  public func events() throws(ZMQError) -> PollEvents {
    let raw = try option(SocketOption<Int32>(rawValue: ZMQ_EVENTS, name: "events"))
    return PollEvents(rawValue: Int16(truncatingIfNeeded: raw))
  }

  /// The file descriptor libzmq signals on when ``events()`` may have changed (`ZMQ_FD`). Owned by
  /// libzmq: do not read from or close it.
  public func fileDescriptor() throws(ZMQError) -> Int32 {
    try option(SocketOption<Int32>(rawValue: ZMQ_FD, name: "fileDescriptor"))
  }

  // MARK: - Sending

  /// Sends `message`, blocking while the queues are full (`zmq_msg_send`). The message is consumed:
  /// on success libzmq owns its content, and on error it is dropped (use ``trySend(_:more:)`` to keep
  /// a message that could not be sent yet).
  ///
  /// - Parameter more: `true` if more parts of the same multipart message follow. Parts are delivered
  ///   all or none, when the last one (`more: false`) is sent.
  /// - Throws: ``ZMQError/wouldBlock`` when ``SocketOption/sendTimeout`` expires,
  ///   ``ZMQError/terminated`` when the context is shut down, ``ZMQError/invalidState`` when the socket
  ///   type does not allow sending now, ``ZMQError/hostUnreachable`` for unroutable ROUTER messages.
  public func send(_ message: consuming Message, more: Bool = false) throws(ZMQError) {
    let flags = more ? ZMQ_SNDMORE : 0
    try check(retryingOnInterrupt { zmq_msg_send(message.pointer, handle, flags) }, "send")
  }

  /// Sends a copy of `bytes` as one part, blocking while the queues are full (`zmq_send`).
  /// Errors as for `send(_:more:)` of a `Message`.
  public func send(_ bytes: some Collection<UInt8>, more: Bool = false) throws(ZMQError) {
    let flags = more ? ZMQ_SNDMORE : 0
    let rc = bytes.withContiguousStorageIfAvailable { buffer in
      retryingOnInterrupt { zmq_send(handle, buffer.baseAddress, buffer.count, flags) }
    }
    if let rc {
      try check(rc, "send")
    } else {
      try send(Message(bytes), more: more)
    }
  }

  /// Sends a copy of the UTF-8 bytes of `string` as one part. Errors as for
  /// `send(_:more:)` of a `Message`.
  public func send(_ string: String, more: Bool = false) throws(ZMQError) {
    try send(string.utf8, more: more)
  }

  /// Sends `message` if that is possible without blocking (`ZMQ_DONTWAIT`).
  ///
  /// - Returns: `true` if the message was queued; `message` is then empty. `false` if the socket would
  ///   have blocked (queues at the high-water mark, or no peer for socket types that need one);
  ///   `message` is then unchanged and can be retried or dropped.
  /// - Throws: errors other than would-block, as for `send(_:more:)` of a `Message`.
  public func trySend(_ message: inout Message, more: Bool = false) throws(ZMQError) -> Bool {
    let flags = ZMQ_DONTWAIT | (more ? ZMQ_SNDMORE : 0)
    return try checkNonBlocking(
      retryingOnInterrupt { zmq_msg_send(message.pointer, handle, flags) }, "trySend")
  }

  /// Sends a copy of `bytes` if that is possible without blocking; `false` if it would have blocked.
  public func trySend(_ bytes: some Collection<UInt8>, more: Bool = false) throws(ZMQError) -> Bool {
    var message = Message(bytes)
    return try trySend(&message, more: more)
  }

  /// Sends all parts of `message` as one multipart message, blocking while the queues are full. The
  /// parts are consumed.
  ///
  /// ZeroMQ delivers multipart messages atomically and checks the high-water mark only for the first
  /// part, so once the first part is accepted the others do not block. An error after the first part
  /// (in practice only ``ZMQError/terminated``) leaves the socket unusable.
  ///
  /// - Throws: ``ZMQError/invalidArgument`` for a message without parts; otherwise as for
  ///   `send(_:more:)` of a `Message`.
  public func send(_ message: consuming MultipartMessage) throws(ZMQError) {
    guard !message.isEmpty else {
      throw ZMQError(code: EINVAL, operation: "send(multipart): a message needs at least one part")
    }
    let last = message.count - 1
    for index in 0...last {
      let part = message.partPointer(at: index)
      let flags = index < last ? ZMQ_SNDMORE : 0
      try check(retryingOnInterrupt { zmq_msg_send(part, handle, flags) }, "send(part \(index))")
    }
  }

  /// Sends all parts of `message` if that is possible without blocking.
  ///
  /// - Returns: `true` if the message was queued; `message` is then empty. `false` if the first part
  ///   would have blocked; `message` is then unchanged.
  /// - Throws: ``ZMQError/invalidArgument`` for a message without parts; errors other than
  ///   would-block as for `send(_:more:)` of a `Message`.
  public func trySend(_ message: inout MultipartMessage) throws(ZMQError) -> Bool {
    guard !message.isEmpty else {
      throw ZMQError(code: EINVAL, operation: "trySend(multipart): a message needs at least one part")
    }
    let last = message.count - 1
    for index in 0...last {
      let part = message.partPointer(at: index)
      let flags = ZMQ_DONTWAIT | (index < last ? ZMQ_SNDMORE : 0)
      let rc = retryingOnInterrupt { zmq_msg_send(part, handle, flags) }
      if rc == -1 && index == 0 && zmq_errno() == EAGAIN { return false }
      try check(rc, "trySend(part \(index))")
    }
    message.removeAll()
    return true
  }

  // MARK: - Receiving

  /// Receives the next message part, blocking until one arrives (`zmq_msg_recv`). Check
  /// ``Message/hasMore`` to learn whether further parts of the same message follow, or use
  /// ``receiveMultipart()``.
  ///
  /// - Throws: ``ZMQError/wouldBlock`` when ``SocketOption/receiveTimeout`` expires,
  ///   ``ZMQError/terminated`` when the context is shut down, ``ZMQError/invalidState`` when the
  ///   socket type does not allow receiving now.
  public func receive() throws(ZMQError) -> Message {
    let message = Message()
    try check(retryingOnInterrupt { zmq_msg_recv(message.pointer, handle, 0) }, "receive")
    return message
  }

  /// Receives the next message part if one is queued (`ZMQ_DONTWAIT`); `nil` otherwise.
  ///
  /// - Throws: errors other than would-block, as for ``receive()``.
  public func tryReceive() throws(ZMQError) -> Message? {
    let message = Message()
    guard try checkNonBlocking(zmq_msg_recv(message.pointer, handle, ZMQ_DONTWAIT), "tryReceive") else {
      return nil
    }
    return message
  }

  /// Receives all parts of the next message, blocking until it arrives. Errors as for ``receive()``.
  public func receiveMultipart() throws(ZMQError) -> MultipartMessage {
    var message = MultipartMessage()
    var more = true
    while more {
      let part = try receive()
      more = part.hasMore
      message.append(part)
    }
    return message
  }

  /// Receives all parts of the next message if one is queued; `nil` otherwise.
  ///
  /// ZeroMQ delivers the parts of a message together, so once the first part is there the others are
  /// too and reading them does not wait. Errors as for ``receive()``.
  public func tryReceiveMultipart() throws(ZMQError) -> MultipartMessage? {
    guard let first = try tryReceive() else { return nil }
    var more = first.hasMore
    var message = MultipartMessage()
    message.append(first)
    while more {
      let part = try receive()
      more = part.hasMore
      message.append(part)
    }
    return message
  }

  // MARK: - Polling

  /// Waits up to `timeout` (`nil`: forever) until the socket is ready for any of `events`; returns the
  /// subset that is ready, empty on timeout. See ``ZMQ/poll(_:_:timeout:)``.
  public func poll(_ events: PollEvents, timeout: Duration?) throws(ZMQError) -> PollEvents {
    try ZMQ.poll(self, events, timeout: timeout)
  }

  // MARK: - Helpers

  private func check(_ rc: Int32, _ operation: @autoclosure () -> String) throws(ZMQError) {
    if rc == -1 { throw .last(operation()) }
  }

  /// `true` on success, `false` on `EAGAIN`, throws on other errors.
  private func checkNonBlocking(_ rc: Int32, _ operation: @autoclosure () -> String) throws(ZMQError)
    -> Bool
  {
    guard rc == -1 else { return true }
    let error = ZMQError.last(operation())
    if error.code == EAGAIN { return false }
    throw error
  }

  private func setRawOption<Value>(
    _ option: SocketOption<Value>, _ value: UnsafeRawPointer, _ size: Int
  ) throws(ZMQError) {
    let rc = retryingOnInterrupt { zmq_setsockopt(handle, option.rawValue, value, size) }
    try check(rc, "setOption(\(option.name))")
  }

  /// Returns the size libzmq reports for the value.
  private func getRawOption<Value>(
    _ option: SocketOption<Value>, _ value: UnsafeMutableRawPointer, _ size: Int
  ) throws(ZMQError) -> Int {
    var size = size
    let rc = retryingOnInterrupt { zmq_getsockopt(handle, option.rawValue, value, &size) }
    try check(rc, "option(\(option.name))")
    return size
  }
}
