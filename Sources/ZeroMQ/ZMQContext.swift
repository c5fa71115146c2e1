import CZeroMQ
import Synchronization

/// A ZeroMQ context (`zmq_ctx_new`): the I/O threads and the registry of `inproc://` endpoints.
///
/// Use one context per process and create every ``Socket`` from it; `inproc://` endpoints are only
/// visible to sockets of the same context.
///
/// ### Thread safety
/// `ZMQContext` is `@unchecked Sendable` because libzmq documents contexts as thread-safe: any thread
/// may create sockets from, shut down or terminate the same context concurrently. The only Swift-side
/// state, the lifecycle, is guarded by a `Mutex`, and the C handle never changes.
///
/// ### Lifetime, shutdown and termination
/// Every socket keeps a strong reference to its context, so a context is deinitialized only after all
/// of its sockets were closed; its `deinit` then terminates it (`zmq_ctx_term`), which may still block
/// while closed sockets *linger* to deliver queued messages (see ``SocketOption/linger`` and the
/// `blocky` parameter of ``init(ioThreads:blocky:)``).
///
/// To stop threads that are blocked in ZeroMQ calls:
/// 1. ``shutdown()``: every blocking and future call on the context's sockets fails with
///    ``ZMQError/terminated`` (`ETERM`), and no new sockets can be created. It returns at once.
/// 2. Each thread that sees `ETERM` closes its sockets (drops them) and exits.
/// 3. The context is terminated when the last reference goes away, or explicitly by ``terminate()``.
public final class ZMQContext: @unchecked Sendable {
  private enum Lifecycle {
    case running
    case shutDown
    case terminating
    case terminated
  }

  /// The `void *` from `zmq_ctx_new`; valid until `zmq_ctx_term` returned.
  let handle: UnsafeMutableRawPointer
  private let lifecycle = Mutex(Lifecycle.running)

  /// Creates a context.
  ///
  /// - Parameters:
  ///   - ioThreads: the number of libzmq I/O threads (`ZMQ_IO_THREADS`). One handles about a gigabyte
  ///     per second; `inproc://` traffic uses none.
  ///   - blocky: libzmq's `ZMQ_BLOCKY`. When `true` (libzmq's default) new sockets linger forever
  ///     (`ZMQ_LINGER` -1), so terminating the context waits until every queued outgoing message was
  ///     delivered. When `false`, new sockets start with a linger of 0 and queued messages are dropped
  ///     at close. Either way ``SocketOption/linger`` can be set per socket.
  /// - Throws: ``ZMQError`` if libzmq cannot create the context (e.g. `EMFILE`) or rejects an option.
  public init(ioThreads: Int32 = 1, blocky: Bool = true) throws(ZMQError) {
    guard let handle = zmq_ctx_new() else { throw .last("zmq_ctx_new") }
    self.handle = handle
    guard zmq_ctx_set(handle, ZMQ_IO_THREADS, ioThreads) == 0 else {
      let error = ZMQError.last("zmq_ctx_set(ZMQ_IO_THREADS, \(ioThreads))")
      zmq_ctx_term(handle)
      throw error
    }
    guard zmq_ctx_set(handle, ZMQ_BLOCKY, blocky ? 1 : 0) == 0 else {
      let error = ZMQError.last("zmq_ctx_set(ZMQ_BLOCKY)")
      zmq_ctx_term(handle)
      throw error
    }
  }

  deinit {
    // All sockets hold a reference to `self`, so none is open any more: this blocks at most for
    // lingering messages.
    if lifecycle.withLock({ $0 }) != .terminated {
      _ = retryingOnInterrupt { zmq_ctx_term(handle) }
    }
  }

  /// Whether ``shutdown()`` or ``terminate()`` was called.
  public var isShutDown: Bool {
    lifecycle.withLock { $0 != .running }
  }

  /// Makes every blocking and future operation on this context's sockets fail with `ETERM` and stops
  /// the creation of new sockets (`zmq_ctx_shutdown`). Returns immediately; idempotent; thread-safe.
  ///
  /// Sockets stay open until their owners drop them; messages they still send are subject to linger.
  public func shutdown() {
    lifecycle.withLock { state in
      guard state == .running else { return }
      state = .shutDown
      zmq_ctx_shutdown(handle)
    }
  }

  /// Shuts the context down (see ``shutdown()``) and then terminates it (`zmq_ctx_term`), **blocking
  /// until every socket of this context was closed** and their linger periods ended.
  ///
  /// Call it only when the threads that own sockets are going to close them (for example after a
  /// ``shutdown()`` made them leave their loops); calling it while the calling thread itself owns an
  /// open socket of this context deadlocks. Usually it is enough to drop the context: its `deinit`
  /// terminates it once the last socket is gone. Thread-safe; a second call returns immediately, even
  /// while the first is still terminating.
  public func terminate() {
    let mustTerminate = lifecycle.withLock { state -> Bool in
      switch state {
      case .running, .shutDown:
        if state == .running { zmq_ctx_shutdown(handle) }
        state = .terminating
        return true
      case .terminating, .terminated:
        return false
      }
    }
    guard mustTerminate else { return }
    // zmq_ctx_term returns EINTR when a signal arrives while it waits; the context is not
    // terminated then and the call must be repeated.
    _ = retryingOnInterrupt { zmq_ctx_term(handle) }
    lifecycle.withLock { $0 = .terminated }
  }

  /// Creates a libzmq socket, or throws `ETERM` once the context is shut down. The lifecycle lock makes
  /// sure `zmq_socket` never runs on a context that `zmq_ctx_term` may already have freed.
  func makeSocketHandle(_ type: SocketType) throws(ZMQError) -> UnsafeMutableRawPointer {
    let result: Result<UnsafeMutableRawPointer, ZMQError> = lifecycle.withLock { state in
      guard state == .running else {
        return .failure(ZMQError(code: ETERM, operation: "zmq_socket(\(type)): context shut down"))
      }
      guard let socket = zmq_socket(handle, type.rawValue) else {
        return .failure(.last("zmq_socket(\(type))"))
      }
      return .success(socket)
    }
    return try result.get()
  }
}
