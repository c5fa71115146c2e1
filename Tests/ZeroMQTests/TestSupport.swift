import Foundation
import Synchronization
import ZeroMQ

/// A context for one test. `blocky: false` gives sockets a linger of 0, so dropping the context never
/// waits for undeliverable messages.
func makeContext() throws -> ZMQContext {
  try ZMQContext(blocky: false)
}

/// Moves a `~Copyable` value (a socket) from the creating thread to the thread that will use it:
/// the creating thread puts it in, the using thread takes it out, exactly once.
final class Handoff<Value: ~Copyable>: @unchecked Sendable {
  private let lock = NSLock()
  private var value: Value?

  init(_ value: consuming Value) {
    self.value = consume value
  }

  func take() -> Value {
    lock.lock()
    defer { lock.unlock() }
    guard let value = value.take() else { fatalError("Handoff.take() called twice") }
    return value
  }
}

/// A thread running `body`, whose result can be awaited with a bounded timeout.
final class TestThread<Result: Sendable>: @unchecked Sendable {
  private let lock = NSLock()
  private let done = DispatchSemaphore(value: 0)
  private var outcome: Swift.Result<Result, any Error>?

  init(_ body: @escaping @Sendable () throws -> Result) {
    let thread = Thread { [self] in
      let outcome = Swift.Result { try body() }
      lock.withLock { self.outcome = outcome }
      done.signal()
    }
    thread.start()
  }

  /// The thread's result, rethrowing its error; `nil` if it did not finish within `timeout` seconds.
  func join(timeout: Double = 3) throws -> Result? {
    guard done.wait(timeout: .now() + timeout) == .success else { return nil }
    return try lock.withLock { outcome }!.get()
  }
}

/// Counts calls of a zero-copy message's release callback.
final class ReleaseCounter: Sendable {
  private let calls = Atomic<Int>(0)
  private let semaphore = DispatchSemaphore(value: 0)

  var count: Int { calls.load(ordering: .sequentiallyConsistent) }

  func release() {
    calls.wrappingAdd(1, ordering: .sequentiallyConsistent)
    semaphore.signal()
  }

  /// Whether a call happened (or had happened) within `timeout` seconds.
  func wait(timeout: Double) -> Bool {
    semaphore.wait(timeout: .now() + timeout) == .success
  }
}

/// A deterministic byte pattern of `count` bytes.
func pattern(_ count: Int, seed: UInt8 = 0) -> [UInt8] {
  (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
}
