import CZeroMQ

/// A typed ZeroMQ socket option (`zmq_setsockopt`/`zmq_getsockopt`), used with
/// `Socket.setOption(_:_:)` and `Socket.option(_:)`.
///
/// `Value` is the Swift type of the option's value: `Int32` for C `int` options, `Int64` for
/// `int64_t`, `Bool` for `int` options that are flags, `String` for text (endpoints, Z85 keys) and
/// `[UInt8]` for binary values. Options this module does not name can be made with
/// ``init(rawValue:name:maximumLength:)``.
///
/// ```swift
/// try socket.setOption(.sendHighWaterMark, 10)
/// try socket.setOption(.conflate, true)
/// let endpoint = try socket.option(.lastEndpoint)
/// ```
///
/// Most options apply only to connections made after they are set: set them before ``Socket/bind(_:)``
/// and ``Socket/connect(_:)``.
public struct SocketOption<Value>: Hashable, CustomStringConvertible, Sendable {
  /// libzmq's option constant, e.g. `ZMQ_SNDHWM`.
  public let rawValue: Int32
  /// A name for diagnostics, e.g. `"sendHighWaterMark"`.
  public let name: String
  /// For `String` and `[UInt8]` options, the size of the buffer passed to `zmq_getsockopt`.
  public let maximumLength: Int

  /// Creates an option from a libzmq constant.
  ///
  /// - Parameters:
  ///   - rawValue: the `ZMQ_...` constant.
  ///   - name: a name for error messages.
  ///   - maximumLength: for `String` and `[UInt8]` options, the buffer size for reading the value
  ///     (including a terminating NUL for strings); libzmq fails with `EINVAL` if it is too small.
  public init(rawValue: Int32, name: String? = nil, maximumLength: Int = 256) {
    self.rawValue = rawValue
    self.name = name ?? "option \(rawValue)"
    self.maximumLength = maximumLength
  }

  public var description: String { name }
}

extension SocketOption where Value == Int32 {
  /// `ZMQ_SNDHWM`: the most messages (not bytes) queued for sending per peer; 0 is unlimited.
  /// When reached, PUSH/DEALER/REQ/PAIR block (or report would-block), PUB/ROUTER drop. Default 1000.
  public static var sendHighWaterMark: Self { Self(rawValue: ZMQ_SNDHWM, name: "sendHighWaterMark") }

  /// `ZMQ_RCVHWM`: the most messages queued for receiving per peer; 0 is unlimited. Default 1000.
  public static var receiveHighWaterMark: Self {
    Self(rawValue: ZMQ_RCVHWM, name: "receiveHighWaterMark")
  }

  /// `ZMQ_LINGER`: milliseconds that queued outgoing messages are kept after the socket is closed,
  /// for context termination to wait on; -1 waits forever, 0 drops them at once.
  public static var linger: Self { Self(rawValue: ZMQ_LINGER, name: "linger") }

  /// `ZMQ_RCVTIMEO`: milliseconds a blocking receive waits before it fails with
  /// ``ZMQError/wouldBlock``; -1 (the default) waits forever.
  public static var receiveTimeout: Self { Self(rawValue: ZMQ_RCVTIMEO, name: "receiveTimeout") }

  /// `ZMQ_SNDTIMEO`: milliseconds a blocking send waits before it fails with ``ZMQError/wouldBlock``;
  /// -1 (the default) waits forever.
  public static var sendTimeout: Self { Self(rawValue: ZMQ_SNDTIMEO, name: "sendTimeout") }

  /// `ZMQ_TCP_KEEPALIVE`: `SO_KEEPALIVE` on TCP connections: 1 on, 0 off, -1 the OS default.
  public static var tcpKeepalive: Self { Self(rawValue: ZMQ_TCP_KEEPALIVE, name: "tcpKeepalive") }

  /// `ZMQ_TCP_KEEPALIVE_IDLE`: seconds of idleness before keepalive probes start; -1 the OS default.
  public static var tcpKeepaliveIdle: Self {
    Self(rawValue: ZMQ_TCP_KEEPALIVE_IDLE, name: "tcpKeepaliveIdle")
  }

  /// `ZMQ_TCP_KEEPALIVE_INTVL`: seconds between keepalive probes; -1 the OS default.
  public static var tcpKeepaliveInterval: Self {
    Self(rawValue: ZMQ_TCP_KEEPALIVE_INTVL, name: "tcpKeepaliveInterval")
  }

  /// `ZMQ_TCP_KEEPALIVE_CNT`: unanswered probes before the connection is dropped; -1 the OS default.
  public static var tcpKeepaliveCount: Self {
    Self(rawValue: ZMQ_TCP_KEEPALIVE_CNT, name: "tcpKeepaliveCount")
  }

  /// `ZMQ_RECONNECT_IVL`: milliseconds before a dropped connection is retried; -1 never retries.
  public static var reconnectInterval: Self {
    Self(rawValue: ZMQ_RECONNECT_IVL, name: "reconnectInterval")
  }
}

extension SocketOption where Value == Int64 {
  /// `ZMQ_MAXMSGSIZE`: the largest message (bytes) accepted from a network peer; a peer that sends a
  /// larger one is disconnected. -1 (the default) is unlimited. Not enforced on `inproc://`.
  public static var maxMessageSize: Self { Self(rawValue: ZMQ_MAXMSGSIZE, name: "maxMessageSize") }
}

extension SocketOption where Value == Bool {
  /// `ZMQ_CONFLATE`: keep only the newest message in each queue. Only for single-part messages;
  /// must be set before connecting or binding.
  public static var conflate: Self { Self(rawValue: ZMQ_CONFLATE, name: "conflate") }

  /// `ZMQ_IMMEDIATE`: queue outgoing messages only to completed connections, so sends block (or report
  /// would-block) instead of filling the queue of a peer that is not there yet.
  public static var immediate: Self { Self(rawValue: ZMQ_IMMEDIATE, name: "immediate") }

  /// `ZMQ_CURVE_SERVER`: act as CURVE server (needs ``curveSecretKey``). Set before binding.
  public static var curveServer: Self { Self(rawValue: ZMQ_CURVE_SERVER, name: "curveServer") }

  /// `ZMQ_ROUTER_MANDATORY`: a ROUTER fails with `EHOSTUNREACH` instead of silently dropping
  /// unroutable messages.
  public static var routerMandatory: Self {
    Self(rawValue: ZMQ_ROUTER_MANDATORY, name: "routerMandatory")
  }

  /// `ZMQ_PROBE_ROUTER`: send an empty message on every new connection, so a ROUTER peer learns
  /// this socket's routing id before it has anything to say (DEALER, REQ and ROUTER sockets).
  public static var probeRouter: Self { Self(rawValue: ZMQ_PROBE_ROUTER, name: "probeRouter") }

  /// `ZMQ_RCVMORE` (read-only): whether the last received part has more parts following.
  public static var receiveMore: Self { Self(rawValue: ZMQ_RCVMORE, name: "receiveMore") }
}

extension SocketOption where Value == String {
  /// `ZMQ_LAST_ENDPOINT` (read-only): the endpoint of the last bind or connect, with the port that the
  /// system chose for `tcp://127.0.0.1:*`.
  public static var lastEndpoint: Self { Self(rawValue: ZMQ_LAST_ENDPOINT, name: "lastEndpoint") }

  /// `ZMQ_CURVE_PUBLICKEY`: this socket's long-term public key, 40-character Z85 (clients).
  public static var curvePublicKey: Self {
    Self(rawValue: ZMQ_CURVE_PUBLICKEY, name: "curvePublicKey", maximumLength: 41)
  }

  /// `ZMQ_CURVE_SECRETKEY`: this socket's long-term secret key, 40-character Z85 (servers and clients).
  public static var curveSecretKey: Self {
    Self(rawValue: ZMQ_CURVE_SECRETKEY, name: "curveSecretKey", maximumLength: 41)
  }

  /// `ZMQ_CURVE_SERVERKEY`: the server's public key, 40-character Z85 (clients); setting it makes the
  /// socket a CURVE client.
  public static var curveServerKey: Self {
    Self(rawValue: ZMQ_CURVE_SERVERKEY, name: "curveServerKey", maximumLength: 41)
  }
}

extension SocketOption where Value == [UInt8] {
  /// `ZMQ_ROUTING_ID`: the identity a ROUTER peer sees for this socket (1 to 255 bytes, not starting
  /// with a zero byte). Set before connecting.
  public static var routingID: Self { Self(rawValue: ZMQ_ROUTING_ID, name: "routingID") }

  /// `ZMQ_SUBSCRIBE` (write-only): see `Socket.subscribe(_:)`.
  public static var subscribe: Self { Self(rawValue: ZMQ_SUBSCRIBE, name: "subscribe") }

  /// `ZMQ_UNSUBSCRIBE` (write-only): see `Socket.unsubscribe(_:)`.
  public static var unsubscribe: Self { Self(rawValue: ZMQ_UNSUBSCRIBE, name: "unsubscribe") }
}

/// Readiness of a socket for I/O, as used by ``ZMQ/poll(_:_:timeout:)`` and ``Socket/events()``.
public struct PollEvents: OptionSet, CustomStringConvertible, Hashable, Sendable {
  public let rawValue: Int16

  public init(rawValue: Int16) {
    self.rawValue = rawValue
  }

  /// At least one message can be received without blocking (`ZMQ_POLLIN`).
  public static let readable = PollEvents(rawValue: Int16(ZMQ_POLLIN))
  /// At least one message can be sent without blocking (`ZMQ_POLLOUT`).
  public static let writable = PollEvents(rawValue: Int16(ZMQ_POLLOUT))
  /// An error condition (`ZMQ_POLLERR`; only reported for file descriptors).
  public static let error = PollEvents(rawValue: Int16(ZMQ_POLLERR))

  /// E.g. `"[readable, writable]"`.
  public var description: String {
    var names: [String] = []
    if contains(.readable) { names.append("readable") }
    if contains(.writable) { names.append("writable") }
    if contains(.error) { names.append("error") }
    return "[\(names.joined(separator: ", "))]"
  }
}
