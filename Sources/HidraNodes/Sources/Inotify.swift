#if canImport(Glibc)
  import Glibc
#endif

/// A small wrapper over Linux inotify: one non-blocking, close-on-exec instance,
/// its watches, and its events read in batches after a `poll` with a timeout (so
/// a caller can notice that it should stop).
struct Inotify: ~Copyable {
  /// One event; `name` is empty for events about the watched directory itself.
  struct Event {
    var watch: Int32
    var mask: UInt32
    var name: String

    func has(_ flag: Int32) -> Bool { mask & UInt32(bitPattern: flag) != 0 }
  }

  struct Failure: Error, CustomStringConvertible {
    var description: String
    var code: Int32 = errno
  }

  static let closeWrite = Int32(IN_CLOSE_WRITE)
  static let movedTo = Int32(IN_MOVED_TO)
  static let movedFrom = Int32(IN_MOVED_FROM)
  static let create = Int32(IN_CREATE)
  static let delete = Int32(IN_DELETE)
  static let isDirectory = Int32(bitPattern: UInt32(IN_ISDIR))
  static let overflow = Int32(IN_Q_OVERFLOW)
  static let ignored = Int32(IN_IGNORED)
  static let onlyDirectory = Int32(IN_ONLYDIR)

  private let descriptor: Int32
  private let buffer: UnsafeMutableRawBufferPointer

  init() throws {
    descriptor = inotify_init1(Int32(IN_CLOEXEC) | Int32(IN_NONBLOCK))
    guard descriptor >= 0 else { throw Failure(description: "inotify_init1: " + Self.errorText()) }
    buffer = .allocate(byteCount: 256 << 10, alignment: 8)
  }

  deinit {
    close(descriptor)
    buffer.deallocate()
  }

  /// Watches `path` for `mask`; the watch descriptor, or an error text. Adding
  /// the same directory again returns its existing watch.
  func addWatch(_ path: String, mask: Int32) -> Result<Int32, Failure> {
    let watch = inotify_add_watch(descriptor, path, UInt32(bitPattern: mask))
    return watch >= 0 ? .success(watch) : .failure(Failure(description: Self.errorText()))
  }

  func removeWatch(_ watch: Int32) { _ = inotify_rm_watch(descriptor, watch) }

  /// Waits up to `timeoutMillis` for events and hands every event already
  /// queued (at most one buffer full) to `handle`. Returns the number of events.
  func read(timeoutMillis: Int32, _ handle: (Event) throws -> Void) throws -> Int {
    var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
    let ready = poll(&entry, 1, timeoutMillis)
    if ready < 0, errno != EINTR { throw Failure(description: "poll: " + Self.errorText()) }
    guard ready > 0 else { return 0 }
    let count = Glibc.read(descriptor, buffer.baseAddress, buffer.count)
    if count < 0 {
      if errno == EAGAIN || errno == EINTR { return 0 }
      throw Failure(description: "read inotify: " + Self.errorText())
    }
    var offset = 0
    var events = 0
    let headerSize = 16  // int wd; uint32 mask, cookie, len
    while offset + headerSize <= count {
      let base = UnsafeRawBufferPointer(rebasing: buffer[offset..<count])
      let watch = base.loadUnaligned(fromByteOffset: 0, as: Int32.self)
      let mask = base.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
      let length = Int(base.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
      guard headerSize + length <= base.count else { break }
      var name = ""
      if length > 0 {
        let bytes = base[headerSize..<headerSize + length]
        let end = bytes.firstIndex(of: 0) ?? bytes.endIndex
        name = String(decoding: bytes[bytes.startIndex..<end], as: UTF8.self)
      }
      try handle(Event(watch: watch, mask: mask, name: name))
      events += 1
      offset += headerSize + length
    }
    return events
  }

  static func errorText() -> String { String(cString: strerror(errno)) }
}
