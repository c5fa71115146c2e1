import Synchronization

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
  /// Bumped on every signal, so a thread may spin on it without the lock.
  private let readableVersion = Atomic<UInt64>(0)
  private let writableVersion = Atomic<UInt64>(0)

  init() {
    // Adaptive: a thread that finds the lock taken spins a little before
    // sleeping, as the other side only ever holds it for a few instructions.
    var mutexAttributes = pthread_mutexattr_t()
    pthread_mutexattr_init(&mutexAttributes)
    pthread_mutexattr_settype(&mutexAttributes, Int32(PTHREAD_MUTEX_ADAPTIVE_NP))
    pthread_mutex_init(mutex, &mutexAttributes)
    pthread_mutexattr_destroy(&mutexAttributes)
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

  /// Takes the lock; pair with `unlock()`. For code that moves a value in
  /// under the lock, which a closure passed to `withLock` could only copy.
  @inline(__always) func lock() { pthread_mutex_lock(mutex) }
  @inline(__always) func unlock() { pthread_mutex_unlock(mutex) }

  @inline(__always) func withLock<T>(_ body: () throws -> T) rethrows -> T {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    return try body()
  }

  /// Waits (the lock held) until signalled or `deadline` (CLOCK_MONOTONIC nanoseconds) passes.
  ///
  /// It first spins briefly without the lock: when the other side is busy
  /// producing (or consuming) the signal usually comes within microseconds, and
  /// catching it awake saves both threads a futex call and a context switch per
  /// frame. Returns at once if a signal came while spinning; callers re-check
  /// their condition either way.
  func waitReadable(until deadline: UInt64? = nil) {
    if spin(on: readableVersion) { return }
    readWaiters += 1
    wait(readable, until: deadline)
    readWaiters -= 1
  }

  func waitWritable(until deadline: UInt64? = nil) {
    if spin(on: writableVersion) { return }
    writeWaiters += 1
    wait(writable, until: deadline)
    writeWaiters -= 1
  }

  /// Wakes the threads waiting to read; call with the lock held.
  func signalReadable() {
    readableVersion.add(1, ordering: .releasing)
    if readWaiters > 0 { pthread_cond_broadcast(readable) }
  }
  /// Wakes the threads waiting to write; call with the lock held.
  func signalWritable() {
    writableVersion.add(1, ordering: .releasing)
    if writeWaiters > 0 { pthread_cond_broadcast(writable) }
  }

  /// Rounds of spinning before sleeping; each round looks at the version a few
  /// times, then yields the core (on a machine with fewer cores than stages the
  /// thread that would signal may need it).
  static let spinRounds = 24

  /// Releases the lock, watches `version` for a change, and takes the lock again.
  /// True when it changed (a signal came). The last look is taken with the lock
  /// held again: signals are sent with the lock held, so a signal that this look
  /// misses comes after the caller has registered as a waiter, and wakes it.
  private func spin(on version: borrowing Atomic<UInt64>) -> Bool {
    let seen = version.load(ordering: .acquiring)
    pthread_mutex_unlock(mutex)
    var changed = false
    rounds: for _ in 0..<Self.spinRounds {
      for _ in 0..<64 where version.load(ordering: .acquiring) != seen {
        changed = true
        break rounds
      }
      sched_yield()
    }
    pthread_mutex_lock(mutex)
    return changed || version.load(ordering: .acquiring) != seen
  }

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
