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
  /// Threads waiting on each condition, so a signal with nobody waiting costs no
  /// system call. Changed with the mutex held; read without it by the two sides
  /// of a lock-free edge (`wakeReaderIfWaiting`, `wakeWriterIfWaiting`), which
  /// is why they are atomics.
  private let readWaiters = Atomic<Int>(0)
  private let writeWaiters = Atomic<Int>(0)
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

  /// Waits (the lock held) until signalled, `ready` returns true, or `deadline`
  /// (CLOCK_MONOTONIC nanoseconds) passes.
  ///
  /// It first spins briefly without the lock: when the other side is busy
  /// producing (or consuming) the signal usually comes within microseconds, and
  /// catching it awake saves both threads a futex call and a context switch per
  /// frame. Returns at once if a signal came or `ready` turned true while
  /// spinning; callers re-check their condition either way.
  ///
  /// `ready` is what a lock-free producer changes without the lock (an edge's
  /// published tail). The waiter counts itself before its last look at `ready`,
  /// and such a producer looks at the count after publishing
  /// (`wakeReaderIfWaiting`), both sequentially consistent: either the waiter
  /// sees the change, or the producer sees the waiter and signals it under the
  /// lock, which the waiter holds until it sleeps. No wake-up is lost.
  func waitReadable(until deadline: UInt64? = nil, ready: () -> Bool = { false }) {
    if spin(on: readableVersion, ready, naps: Self.naps) { return }
    readWaiters.add(1, ordering: .sequentiallyConsistent)
    if !ready() { wait(readable, until: deadline) }
    readWaiters.subtract(1, ordering: .relaxed)
  }

  /// As `waitReadable`, for the producers' side: `ready` is what a lock-free
  /// consumer changes without the lock (the totals it has taken).
  func waitWritable(until deadline: UInt64? = nil, ready: () -> Bool = { false }) {
    if spin(on: writableVersion, ready, naps: 0) { return }
    writeWaiters.add(1, ordering: .sequentiallyConsistent)
    if !ready() { wait(writable, until: deadline) }
    writeWaiters.subtract(1, ordering: .relaxed)
  }

  /// Wakes the threads waiting to read; call with the lock held.
  func signalReadable() {
    readableVersion.add(1, ordering: .releasing)
    if readWaiters.load(ordering: .relaxed) > 0 { pthread_cond_broadcast(readable) }
  }
  /// Wakes the threads waiting to write; call with the lock held.
  func signalWritable() {
    writableVersion.add(1, ordering: .releasing)
    if writeWaiters.load(ordering: .relaxed) > 0 { pthread_cond_broadcast(writable) }
  }

  /// For a producer that published without the lock (sequentially consistent):
  /// takes the lock and signals only if a reader waits or is about to. Call
  /// without the lock held.
  @inline(__always) func wakeReaderIfWaiting() {
    if readWaiters.load(ordering: .sequentiallyConsistent) > 0 { withLock { signalReadable() } }
  }

  /// For a consumer that published what it took without the lock: as
  /// `wakeReaderIfWaiting`, for waiting producers.
  @inline(__always) func wakeWriterIfWaiting() {
    if writeWaiters.load(ordering: .sequentiallyConsistent) > 0 { withLock { signalWritable() } }
  }

  /// Rounds of spinning before napping (or sleeping); each round looks at the
  /// version a few times, then yields the core (on a machine with fewer cores
  /// than stages the thread that would signal may need it).
  static let spinRounds = 24
  /// Naps a reader takes before sleeping on the condition, and how long each is.
  static let naps = 4
  static let napNanos = 50_000

  /// Releases the lock, watches `version` and `ready` for a change, and takes
  /// the lock again. True when either changed (a signal came, or a lock-free
  /// peer published). The last look is taken with the lock held again: signals
  /// are sent with the lock held, so a signal that this look misses comes after
  /// the caller has registered as a waiter, and wakes it.
  ///
  /// It spins first, yielding between looks; then a reader takes up to
  /// `naps` naps of `napNanos` before the caller sleeps on the condition. A
  /// reader whose producer is slower than itself would otherwise sleep after
  /// almost every frame, and the producer pay a futex wake-up (a system call)
  /// for each; napping, it finds the frames that came meanwhile and takes them
  /// as one batch, and the producer does not call the kernel. Writers do not
  /// nap: a paced edge of 64 KiB frames drains in less than one nap, so a
  /// napping producer would leave its consumer idle (measured: `throughput` B
  /// at 64 KiB fell from 0.8-0.9 to 0.64-0.68 of raw).
  private func spin(on version: borrowing Atomic<UInt64>, _ ready: () -> Bool, naps: Int) -> Bool {
    let seen = version.load(ordering: .acquiring)
    pthread_mutex_unlock(mutex)
    var changed = false
    looking: do {
      for _ in 0..<Self.spinRounds {
        for _ in 0..<64 where version.load(ordering: .acquiring) != seen || ready() {
          changed = true
          break looking
        }
        sched_yield()
      }
      var nap = timespec(tv_sec: 0, tv_nsec: Self.napNanos)
      for _ in 0..<naps {
        nanosleep(&nap, nil)
        if version.load(ordering: .acquiring) != seen || ready() {
          changed = true
          break looking
        }
      }
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
