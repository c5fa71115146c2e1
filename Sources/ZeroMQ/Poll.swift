import CZeroMQ

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

extension ZMQ {
  /// Waits up to `timeout` until `socket` is ready for any of `events` (`zmq_poll`).
  ///
  /// The socket is borrowed for the duration of the call, so it cannot be closed or moved while
  /// libzmq looks at it. The polling functions take one to three sockets, each with the events of
  /// interest; for more inputs, connect one socket to several endpoints (ZeroMQ fair-queues them).
  ///
  /// - Parameters:
  ///   - timeout: how long to wait; `nil` waits forever, `.zero` only checks. Rounded up to whole
  ///     milliseconds. When a signal interrupts the wait, it continues for the remaining time.
  /// - Returns: the subset of `events` that is ready; empty when the timeout expired.
  /// - Throws: ``ZMQError/terminated`` when the context is shut down.
  public static func poll(_ socket: borrowing Socket, _ events: PollEvents, timeout: Duration?)
    throws(ZMQError) -> PollEvents
  {
    var items = [zmq_pollitem_t(socket: socket.handle, fd: 0, events: events.rawValue, revents: 0)]
    try poll(&items, timeout: timeout)
    return PollEvents(rawValue: items[0].revents)
  }

  /// Waits up to `timeout` until either socket is ready for its events; returns what is ready per
  /// socket. See ``poll(_:_:timeout:)``.
  public static func poll(
    _ first: borrowing Socket, _ firstEvents: PollEvents,
    _ second: borrowing Socket, _ secondEvents: PollEvents,
    timeout: Duration?
  ) throws(ZMQError) -> (PollEvents, PollEvents) {
    var items = [
      zmq_pollitem_t(socket: first.handle, fd: 0, events: firstEvents.rawValue, revents: 0),
      zmq_pollitem_t(socket: second.handle, fd: 0, events: secondEvents.rawValue, revents: 0),
    ]
    try poll(&items, timeout: timeout)
    return (PollEvents(rawValue: items[0].revents), PollEvents(rawValue: items[1].revents))
  }

  /// Waits up to `timeout` until any of three sockets is ready for its events; returns what is ready
  /// per socket. See ``poll(_:_:timeout:)``.
  public static func poll(
    _ first: borrowing Socket, _ firstEvents: PollEvents,
    _ second: borrowing Socket, _ secondEvents: PollEvents,
    _ third: borrowing Socket, _ thirdEvents: PollEvents,
    timeout: Duration?
  ) throws(ZMQError) -> (PollEvents, PollEvents, PollEvents) {
    var items = [
      zmq_pollitem_t(socket: first.handle, fd: 0, events: firstEvents.rawValue, revents: 0),
      zmq_pollitem_t(socket: second.handle, fd: 0, events: secondEvents.rawValue, revents: 0),
      zmq_pollitem_t(socket: third.handle, fd: 0, events: thirdEvents.rawValue, revents: 0),
    ]
    try poll(&items, timeout: timeout)
    return (
      PollEvents(rawValue: items[0].revents), PollEvents(rawValue: items[1].revents),
      PollEvents(rawValue: items[2].revents)
    )
  }

  /// Runs `zmq_poll` over `items`, continuing after `EINTR` with the time that is left.
  private static func poll(_ items: inout [zmq_pollitem_t], timeout: Duration?) throws(ZMQError) {
    let clock = ContinuousClock()
    let deadline = timeout.map { clock.now.advanced(by: $0) }
    var milliseconds = timeout.map(Self.milliseconds(rounding:)) ?? -1
    while true {
      let count = Int32(items.count)
      let rc = items.withUnsafeMutableBufferPointer { zmq_poll($0.baseAddress, count, milliseconds) }
      if rc >= 0 { return }
      let error = ZMQError.last("poll")
      guard error.code == EINTR else { throw error }
      if let deadline {
        let remaining = clock.now.duration(to: deadline)
        if remaining <= .zero {
          for index in items.indices { items[index].revents = 0 }
          return
        }
        milliseconds = Self.milliseconds(rounding: remaining)
      }
    }
  }

  /// `duration` in whole milliseconds, rounded up, clamped to `0...Int32.max`.
  static func milliseconds(rounding duration: Duration) -> Int {
    let (seconds, attoseconds) = duration.components
    guard seconds >= 0, seconds > 0 || attoseconds > 0 else { return 0 }
    let perMillisecond: Int64 = 1_000_000_000_000_000
    let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1000)
    let fraction = (attoseconds + perMillisecond - 1) / perMillisecond
    guard !overflow, whole < Int64(Int32.max) else { return Int(Int32.max) }
    return Int(min(whole + fraction, Int64(Int32.max)))
  }
}
