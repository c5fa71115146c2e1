#if canImport(Glibc)
  import Glibc
#endif

/// A mutex with two condition variables, for the producer/consumer queues of edges.
///
/// `@unchecked Sendable`: the pthread objects are heap-allocated, never move, and
/// are only touched through pthread calls, which are thread-safe by contract.
final class ConditionLock: @unchecked Sendable {
  private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
  /// Signalled when a queue gains a frame or closes.
  private let readable = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
  /// Signalled when a queue loses a frame or is aborted.
  private let writable = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
  /// Threads waiting on each condition (read and written with the mutex held), so
  /// a signal with nobody waiting costs no system call.
  private var readWaiters = 0
  private var writeWaiters = 0

  init() {
    pthread_mutex_init(mutex, nil)
    for cond in [readable, writable] {
      var attributes = pthread_condattr_t()
      pthread_condattr_init(&attributes)
      pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
      pthread_cond_init(cond, &attributes)
      pthread_condattr_destroy(&attributes)
    }
  }

  deinit {
    pthread_cond_destroy(readable)
    pthread_cond_destroy(writable)
    pthread_mutex_destroy(mutex)
    readable.deallocate()
    writable.deallocate()
    mutex.deallocate()
  }

  @inline(__always) func withLock<T>(_ body: () throws -> T) rethrows -> T {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    return try body()
  }

  /// Waits (the lock held) until signalled or `deadline` (CLOCK_MONOTONIC nanoseconds) passes.
  func waitReadable(until deadline: UInt64? = nil) {
    readWaiters += 1
    wait(readable, until: deadline)
    readWaiters -= 1
  }

  func waitWritable(until deadline: UInt64? = nil) {
    writeWaiters += 1
    wait(writable, until: deadline)
    writeWaiters -= 1
  }

  /// Wakes the threads waiting to read; call with the lock held.
  func signalReadable() { if readWaiters > 0 { pthread_cond_broadcast(readable) } }
  /// Wakes the threads waiting to write; call with the lock held.
  func signalWritable() { if writeWaiters > 0 { pthread_cond_broadcast(writable) } }

  private func wait(_ cond: UnsafeMutablePointer<pthread_cond_t>, until deadline: UInt64?) {
    guard let deadline else {
      pthread_cond_wait(cond, mutex)
      return
    }
    var time = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
    pthread_cond_timedwait(cond, mutex, &time)
  }
}

/// Monotonic clock in nanoseconds.
@inline(__always) public func monotonicNanos() -> UInt64 {
  var time = timespec()
  clock_gettime(CLOCK_MONOTONIC, &time)
  return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

/// Wall clock in nanoseconds since the epoch.
@inline(__always) public func wallNanos() -> UInt64 {
  var time = timespec()
  clock_gettime(CLOCK_REALTIME, &time)
  return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}
