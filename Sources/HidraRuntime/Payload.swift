#if canImport(Glibc)
  import Glibc
#endif

/// The bytes of a frame: immutable once made, shared by reference.
///
/// A payload is never copied inside a process: a split that broadcasts hands the
/// same `Payload` to every branch, a checksum reads it in place, and (later) a
/// store writes from it and a forward sends it with ZeroMQ's zero-copy send. The
/// memory is released when the last frame holding it is gone.
///
/// `@unchecked Sendable`: the bytes are written only by the closure that makes
/// the payload, before any other thread can see it, and never after.
public final class Payload: @unchecked Sendable {
  public let bytes: UnsafeRawBufferPointer
  /// Memory this payload allocated itself, given back in `deinit`, and its capacity.
  private let allocated: UnsafeMutableRawPointer?
  private let capacity: Int
  /// How to give back adopted memory.
  private let release: (@Sendable () -> Void)?

  /// Allocates `count` bytes and lets `fill` write them, once.
  public init(count: Int, fill: (UnsafeMutableRawBufferPointer) throws -> Void) rethrows {
    let (memory, capacity) = BufferPool.shared.take(count)
    // A pooled buffer has room to start on a cache line (`BufferPool.slack`).
    let start = capacity > 0 ? memory.alignedUp(toMultipleOf: BufferPool.slack) : memory
    let buffer = UnsafeMutableRawBufferPointer(start: start, count: count)
    do { try fill(buffer) } catch {
      BufferPool.shared.give(memory, capacity: capacity)
      throw error
    }
    self.bytes = UnsafeRawBufferPointer(buffer)
    self.allocated = memory
    self.capacity = capacity
    self.release = nil
  }

  /// Copies `source` (for small payloads built from other data, e.g. headers).
  public convenience init(copying source: some Collection<UInt8>) {
    self.init(count: source.count) { buffer in _ = buffer.initializeMemory(as: UInt8.self, from: source) }
  }

  /// Adopts memory someone else owns (e.g. a received ZeroMQ message) without
  /// copying; `release` runs exactly once, when the payload is freed.
  public init(adopting bytes: UnsafeRawBufferPointer, release: @escaping @Sendable () -> Void) {
    self.bytes = bytes
    self.allocated = nil
    self.capacity = 0
    self.release = release
  }

  deinit {
    if let allocated { BufferPool.shared.give(allocated, capacity: capacity) }
    release?()
  }

  public var count: Int { bytes.count }

  public static let empty = Payload(count: 0) { _ in }
}

/// Reuses large payload buffers.
///
/// Payloads are made on one thread (the source) and freed on another (the last
/// consumer). glibc serves large blocks with mmap and gives them back on free, so
/// every frame of a megabyte or more faulted its pages in again: a benchmark saw
/// 38x the page faults of raw libzmq. Buffers of 64 KiB and more are kept here
/// instead, up to `maxBytes` in all, and handed out again already faulted in.
final class BufferPool: @unchecked Sendable {
  // @unchecked Sendable: `state` is only touched under `lock`.
  static let shared = BufferPool(maxBytes: 32 << 20)
  /// Smaller buffers come from malloc directly.
  static let threshold = 64 << 10
  /// Every pooled buffer (1 KiB up, here and in `SmallBuffers`) is allocated
  /// this much larger than its capacity, and a payload starts at its first
  /// cache line: vector code reading it (XXH3's AVX2 loop, 32 bytes a load)
  /// never splits a load across two lines. glibc's malloc aligns to 16 bytes
  /// only: half the buffers were 16 bytes off a 32-byte boundary and hashed
  /// up to a fifth slower (`hidra-bench checksum`, offset16/direct).
  /// `aligned_alloc` would do it without the slack, but glibc carves each
  /// such block out of a larger one and leaves the rest as fragments: the
  /// `memory` benchmark's 4 MiB stream row peaked at 184-300 MiB against
  /// 99 MiB with malloc.
  static let slack = 64

  private struct State {
    var free: [Int: [UnsafeMutableRawPointer]] = [:]
    var bytes = 0
  }
  private let lock = ConditionLock()
  private var state = State()
  let maxBytes: Int

  init(maxBytes: Int) { self.maxBytes = maxBytes }

  /// A buffer of at least `count` bytes, and its capacity.
  func take(_ count: Int) -> (UnsafeMutableRawPointer, Int) {
    guard count >= Self.threshold else {
      if let pooled = SmallBuffers.take(count) { return pooled }
      guard let memory = malloc(max(count, 1)) else { fatalError("out of memory allocating \(count) bytes") }
      return (memory, 0)
    }
    let capacity = (count + Self.threshold - 1) / Self.threshold * Self.threshold
    let reused = lock.withLock { () -> UnsafeMutableRawPointer? in
      guard let memory = state.free[capacity]?.popLast() else { return nil }
      state.bytes -= capacity
      return memory
    }
    if let reused { return (reused, capacity) }
    guard let memory = malloc(capacity + Self.slack) else {
      fatalError("out of memory allocating \(capacity) bytes")
    }
    return (memory, capacity)
  }

  /// Gives a buffer back: kept for reuse while the pool is under its bound.
  func give(_ memory: UnsafeMutableRawPointer, capacity: Int) {
    if capacity > 0 && capacity < Self.threshold {
      SmallBuffers.give(memory, capacity: capacity)
      return
    }
    let kept =
      capacity > 0
      && lock.withLock { () -> Bool in
        guard state.bytes + capacity <= maxBytes else { return false }
        state.free[capacity, default: []].append(memory)
        state.bytes += capacity
        return true
      }
    if !kept { free(memory) }
  }
}
