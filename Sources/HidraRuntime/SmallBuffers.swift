#if canImport(Glibc)
  import Glibc
#endif

/// Reuses payload buffers from 1 KiB to just under 64 KiB, per thread.
///
/// A source makes every payload on its thread and the last consumer frees it on
/// another. glibc serves these sizes from the source thread's arena under the
/// arena's lock, both the `malloc` and the `free` on the other thread, and every
/// such `malloc` first folds the arena's fast bins together
/// (`malloc_consolidate`): at 4 KiB a frame's two threads took that lock from
/// both sides at over a million frames a second, and `perf` showed the
/// consumer asleep on it and the source waking it. Here each thread keeps the
/// buffers it freed, by size class (powers of two), and hands them to a shared
/// depot 32 at a time, where a thread that runs out takes 32 at a time: one
/// lock per 32 buffers instead of two per frame, and a buffer is reused while
/// still in a cache.
///
/// Bounded: a thread keeps at most 64 buffers of a class, the depot at most
/// `depotBytes`; beyond that buffers go back to `free`.
enum SmallBuffers {
  /// The smallest class; smaller payloads come from `malloc` (glibc's
  /// per-thread cache already serves those without a lock).
  static let smallest = 1 << 10
  /// Classes 1 KiB ... 32 KiB; `BufferPool.threshold` (64 KiB) and up are not here.
  static let classes = 6
  static let batch = 32
  static let depotBytes = 16 << 20

  /// The class of a request of `count` bytes (nil: not pooled), and its size.
  @inline(__always) static func sizeClass(_ count: Int) -> (index: Int, size: Int)? {
    guard count > smallest / 2, count <= smallest << (classes - 1) else { return nil }
    let index = max(0, Int.bitWidth - (count - 1).leadingZeroBitCount - 10)
    return (index, smallest << index)
  }

  /// A pooled buffer of at least `count` bytes and its capacity, or nil for
  /// sizes this pool does not serve.
  static func take(_ count: Int) -> (UnsafeMutableRawPointer, Int)? {
    guard let (index, size) = sizeClass(count) else { return nil }
    let pooled = ThreadCache.current._withUnsafeGuaranteedRef { cache in
      cache.pop(index) ?? refill(cache, index)
    }
    if let memory = pooled { return (memory, size) }
    // Room for the payload to start on a cache line (`BufferPool.slack`).
    guard let memory = malloc(size + BufferPool.slack) else {
      fatalError("out of memory allocating \(size) bytes")
    }
    return (memory, size)
  }

  /// Gives back a buffer `take` returned, with its capacity.
  static func give(_ memory: UnsafeMutableRawPointer, capacity: Int) {
    guard let (index, _) = sizeClass(capacity) else {
      free(memory)
      return
    }
    ThreadCache.current._withUnsafeGuaranteedRef { cache in
      cache.push(memory, index)
      if cache.count(index) >= 2 * batch { spill(cache, index) }
    }
  }

  // MARK: - The depot

  private static let depot = Depot()

  private final class Depot: @unchecked Sendable {
    // @unchecked Sendable: `batches` and `bytes` are guarded by `lock`.
    let lock = ConditionLock()
    var batches = [[[UnsafeMutableRawPointer]]](repeating: [], count: SmallBuffers.classes)
    var bytes = 0
  }

  /// Buffers of class `index` in the depot now (for tests).
  static func depotCount(_ index: Int) -> Int {
    depot.lock.withLock { depot.batches[index].reduce(0) { $0 + $1.count } }
  }

  private static func refill(_ cache: ThreadCache, _ index: Int) -> UnsafeMutableRawPointer? {
    let taken = depot.lock.withLock { () -> [UnsafeMutableRawPointer]? in
      guard let batch = depot.batches[index].popLast() else { return nil }
      depot.bytes -= batch.count * (smallest << index)
      return batch
    }
    guard let taken else { return nil }
    for memory in taken { cache.push(memory, index) }
    return cache.pop(index)
  }

  private static func spill(_ cache: ThreadCache, _ index: Int) {
    let batch = cache.popBatch(index, batch)
    let bytes = batch.count * (smallest << index)
    let kept = depot.lock.withLock { () -> Bool in
      guard depot.bytes + bytes <= depotBytes else { return false }
      depot.batches[index].append(batch)
      depot.bytes += bytes
      return true
    }
    if !kept { for memory in batch { free(memory) } }
  }

  /// Hands what a thread kept to the depot (or frees it) when the thread ends.
  fileprivate static func retire(_ cache: ThreadCache) {
    for index in 0..<classes {
      while cache.count(index) > 0 { spill(cache, index) }
    }
  }

  // MARK: - The thread's own cache

  /// Free buffers of one thread, by class. Only its thread touches it.
  fileprivate final class ThreadCache {
    /// By class. Behind `ThreadOwned`: a `var` of the class was checked for
    /// exclusive access on every take and give (about 80 instructions each).
    private let free = ThreadOwned([[UnsafeMutableRawPointer]](repeating: [], count: SmallBuffers.classes))

    init() {
      for index in 0..<SmallBuffers.classes { free.value[index].reserveCapacity(2 * SmallBuffers.batch) }
    }

    @inline(__always) func pop(_ index: Int) -> UnsafeMutableRawPointer? { free.value[index].popLast() }
    @inline(__always) func push(_ memory: UnsafeMutableRawPointer, _ index: Int) {
      free.value[index].append(memory)
    }
    @inline(__always) func count(_ index: Int) -> Int { free.value[index].count }

    func popBatch(_ index: Int, _ count: Int) -> [UnsafeMutableRawPointer] {
      let taken = Array(free.value[index].suffix(count))
      free.value[index].removeLast(taken.count)
      return taken
    }

    /// This thread's cache, made on first use and retired when the thread ends.
    /// Unmanaged: the thread-specific slot holds it, so a take or a give need
    /// not retain and release it.
    static var current: Unmanaged<ThreadCache> {
      if let existing = pthread_getspecific(key) { return Unmanaged<ThreadCache>.fromOpaque(existing) }
      let cache = Unmanaged.passRetained(ThreadCache())
      pthread_setspecific(key, cache.toOpaque())
      return cache
    }

    private static let key: pthread_key_t = {
      var key = pthread_key_t()
      let status = pthread_key_create(&key) { pointer in
        guard let pointer else { return }
        let cache = Unmanaged<ThreadCache>.fromOpaque(pointer).takeRetainedValue()
        SmallBuffers.retire(cache)
      }
      precondition(status == 0, "pthread_key_create failed: \(status)")
      return key
    }()
  }
}
