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
  /// Memory this payload allocated itself, freed in `deinit`.
  private let allocated: UnsafeMutableRawPointer?
  /// How to give back adopted memory.
  private let release: (@Sendable () -> Void)?

  /// Allocates `count` bytes and lets `fill` write them, once.
  public init(count: Int, fill: (UnsafeMutableRawBufferPointer) throws -> Void) rethrows {
    let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 64)
    let buffer = UnsafeMutableRawBufferPointer(rebasing: memory[0..<count])
    do { try fill(buffer) } catch {
      memory.deallocate()
      throw error
    }
    self.bytes = UnsafeRawBufferPointer(buffer)
    self.allocated = memory.baseAddress
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
    self.release = release
  }

  deinit {
    allocated?.deallocate()
    release?()
  }

  public var count: Int { bytes.count }

  public static let empty = Payload(count: 0) { _ in }
}
