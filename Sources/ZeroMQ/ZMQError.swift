import CZeroMQ

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// An error reported by libzmq: an `errno` value plus what the wrapper was doing when it failed.
///
/// Every throwing API in this module throws `ZMQError` (typed throws), so a `catch` clause gets the
/// value without a cast. The common cases are available as static values and can be matched directly:
///
/// ```swift
/// do {
///   let message = try socket.receive()
/// } catch ZMQError.wouldBlock {
///   // the receive timeout (`.receiveTimeout`) expired
/// } catch ZMQError.terminated {
///   // the context was shut down: close the socket and leave the thread
/// }
/// ```
///
/// Two errors are equal (and hash alike) when their ``code`` is equal; ``operation`` is diagnostic
/// context only, so `error == .wouldBlock` holds whatever call produced the error.
///
/// `EINTR` is never thrown by the blocking calls of this module: they retry when a signal interrupts
/// them (see ``Socket`` for why). ``interrupted`` exists for completeness and for raw libzmq calls.
public struct ZMQError: Error, CustomStringConvertible, Hashable, Sendable {
  /// The `errno` value; libzmq's own codes (`ETERM`, `EFSM`, ...) live above `ZMQ_HAUSNUMERO`.
  public let code: Int32

  /// What failed, e.g. `"connect(bogus://x)"`; empty for the static values.
  public let operation: String

  /// Creates an error from an `errno` value and a description of the failed operation.
  public init(code: Int32, operation: String = "") {
    self.code = code
    self.operation = operation
  }

  /// The error libzmq reports for the calling thread right now (`zmq_errno()`), tagged with `operation`.
  static func last(_ operation: @autoclosure () -> String) -> ZMQError {
    ZMQError(code: zmq_errno(), operation: operation())
  }

  /// libzmq's text for ``code`` (`zmq_strerror`), e.g. "Resource temporarily unavailable".
  public var message: String {
    String(cString: zmq_strerror(code))
  }

  /// `"<operation>: <message> (errno <code>)"`, or without the operation when there is none.
  public var description: String {
    operation.isEmpty ? "\(message) (errno \(code))" : "\(operation): \(message) (errno \(code))"
  }

  public static func == (lhs: ZMQError, rhs: ZMQError) -> Bool {
    lhs.code == rhs.code
  }

  public func hash(into hasher: inout Hasher) {
    hasher.combine(code)
  }

  /// `EAGAIN`: a non-blocking call could not proceed, or a send/receive timeout expired.
  public static let wouldBlock = ZMQError(code: EAGAIN)

  /// `ETERM`: the socket's context was shut down or terminated; the socket should be closed.
  public static let terminated = ZMQError(code: ETERM)

  /// `EINTR`: a signal interrupted the call (not thrown by this module's blocking calls; see above).
  public static let interrupted = ZMQError(code: EINTR)

  /// `EINVAL`: an invalid argument, e.g. a malformed endpoint or option value.
  public static let invalidArgument = ZMQError(code: EINVAL)

  /// `EPROTONOSUPPORT`: the endpoint's transport (the part before `://`) is not supported.
  public static let protocolNotSupported = ZMQError(code: EPROTONOSUPPORT)

  /// `ENOCOMPATPROTO`: the transport is not compatible with the socket type.
  public static let incompatibleProtocol = ZMQError(code: ENOCOMPATPROTO)

  /// `EADDRINUSE`: the address is already bound.
  public static let addressInUse = ZMQError(code: EADDRINUSE)

  /// `EADDRNOTAVAIL`: the address is not local.
  public static let addressNotAvailable = ZMQError(code: EADDRNOTAVAIL)

  /// `ENOENT`: unbind/disconnect of an endpoint that was not bound/connected.
  public static let noSuchEndpoint = ZMQError(code: ENOENT)

  /// `ENOTSUP`: the operation is not supported by this socket type or this build of libzmq.
  public static let notSupported = ZMQError(code: ENOTSUP)

  /// `EFSM`: the operation is not valid in the socket's current state (e.g. REQ sending twice).
  public static let invalidState = ZMQError(code: EFSM)

  /// `EHOSTUNREACH`: a ROUTER with `ZMQ_ROUTER_MANDATORY` could not route the message.
  public static let hostUnreachable = ZMQError(code: EHOSTUNREACH)

  /// `EMSGSIZE`: the message is too large for the operation.
  public static let messageTooLarge = ZMQError(code: EMSGSIZE)
}

/// Runs a libzmq call that returns `-1` and sets `errno` on failure, repeating it while it fails with
/// `EINTR`. Returns the final return code; `zmq_errno()` is still valid for it when it is `-1`.
@inline(__always)
func retryingOnInterrupt(_ call: () -> Int32) -> Int32 {
  while true {
    let rc = call()
    if rc == -1 && zmq_errno() == EINTR { continue }
    return rc
  }
}
