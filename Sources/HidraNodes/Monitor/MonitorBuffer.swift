import DequeModule
import NIOCore
import Synchronization

/// The images a simplon-monitor forward holds, and its SIMPLON configuration,
/// behind one lock: the stage's thread puts images in, the HTTP server's threads
/// read and take them. Holding an image costs a reference to its (compressed)
/// payload; nothing is decoded here.
///
/// Like the detector's monitor: with `discard_new` false a full buffer drops its
/// oldest image for the new one; with `discard_new` true the new image is
/// dropped. Either way the drop is counted (`status/dropped`). The buffer holds
/// at most `buffer_size` images and `maxBytes` payload bytes.
final class MonitorBuffer: Sendable {
  struct Config: Sendable, Equatable {
    var enabled = true
    var discardNew = false
    var size: Int
  }

  struct Status: Sendable {
    var config: Config
    var count: Int
    var bytes: Int
    var dropped: Int
    var errors: [String]
  }

  private struct State: Sendable {
    var config: Config
    var images: Deque<MonitorImage> = []
    var bytes = 0
    var dropped = 0
    var errors: [String] = []
    var waiters: [Int: EventLoopPromise<MonitorImage?>] = [:]
    var nextWaiter = 0
    var closed = false
    /// The last TIFF made for an image that stays in the buffer (`images/monitor`
    /// polled again and again), by image id.
    var cached: (id: UInt64, tiff: ByteBuffer)?

    /// Drops the oldest images (counted) until the bounds hold.
    mutating func trim(maxBytes: Int) {
      while images.count > config.size || (bytes > maxBytes && images.count > 1) {
        let oldest = images.removeFirst()
        bytes -= oldest.byteCount
        dropped += 1
      }
    }
  }

  /// The largest `buffer_size` a client may set.
  static let maxSize = 100_000
  /// How many recent error messages `status/error` lists.
  static let maxErrors = 16

  let maxBytes: Int
  let initial: Config
  private let state: Mutex<State>

  init(size: Int, maxBytes: Int) {
    initial = Config(size: size)
    self.maxBytes = maxBytes
    state = Mutex(State(config: initial))
  }

  // MARK: - The stage's side

  /// Offers a new image. Returns false when it was not kept (monitor disabled,
  /// or full with `discard_new`).
  @discardableResult
  func put(_ image: MonitorImage) -> Bool {
    let (kept, waiters) = state.withLock { state -> (Bool, [EventLoopPromise<MonitorImage?>]) in
      guard state.config.enabled, !state.closed else { return (false, []) }
      let full =
        state.images.count >= state.config.size
        || (state.bytes + image.byteCount > maxBytes && !state.images.isEmpty)
      if full && state.config.discardNew {
        state.dropped += 1
        return (false, [])
      }
      state.images.append(image)
      state.bytes += image.byteCount
      state.trim(maxBytes: maxBytes)
      let waiters = Array(state.waiters.values)
      state.waiters.removeAll()
      return (true, waiters)
    }
    for waiter in waiters { waiter.succeed(image) }
    return kept
  }

  /// Notes a problem for `status/error` (the most recent few are kept).
  func noteError(_ message: String) {
    state.withLock { state in
      state.errors.append(message)
      if state.errors.count > Self.maxErrors { state.errors.removeFirst(state.errors.count - Self.maxErrors) }
    }
  }

  /// The server is going away: waiting clients get no image.
  func close() {
    let waiters = state.withLock { state in
      state.closed = true
      defer { state.waiters.removeAll() }
      return Array(state.waiters.values)
    }
    for waiter in waiters { waiter.succeed(nil) }
  }

  // MARK: - The server's side

  /// The oldest image, taken out (each image goes to one request only); nil when
  /// there is none or the monitor is disabled.
  func next() -> MonitorImage? {
    state.withLock { state in
      guard state.config.enabled, !state.images.isEmpty else { return nil }
      let image = state.images.removeFirst()
      state.bytes -= image.byteCount
      return image
    }
  }

  /// The newest image, left in place.
  func newest() -> MonitorImage? {
    state.withLock { $0.config.enabled ? $0.images.last : nil }
  }

  /// The newest image, or the next one to arrive within `timeout`; nil after that.
  func newest(on eventLoop: any EventLoop, waiting timeout: TimeAmount) -> EventLoopFuture<MonitorImage?> {
    let promise = eventLoop.makePromise(of: MonitorImage?.self)
    // Decided under the lock, answered outside it (an answer may run callbacks at once).
    let answer = state.withLock { state -> MonitorImage?? in
      guard state.config.enabled, !state.closed else { return .some(nil) }
      if let newest = state.images.last { return .some(newest) }
      guard timeout > .zero else { return .some(nil) }
      let id = state.nextWaiter
      state.nextWaiter += 1
      state.waiters[id] = promise
      eventLoop.scheduleTask(in: timeout) { [self] in
        let waiter = self.state.withLock { $0.waiters.removeValue(forKey: id) }
        waiter?.succeed(nil)
      }
      return nil
    }
    if let answer { promise.succeed(answer) }
    return promise.futureResult
  }

  /// The image `frame` of `series`, left in place.
  func image(series: Int, frame: Int) -> MonitorImage? {
    state.withLock { state in state.images.last { $0.series == series && $0.frame == frame } }
  }

  /// `[series, frame]` of every held image, oldest first.
  func list() -> [[Int]] {
    state.withLock { state in state.images.map { [$0.series, $0.frame] } }
  }

  /// The TIFF of a held image, made at most once while it is the cached one.
  func cachedTIFF(for id: UInt64) -> ByteBuffer? {
    state.withLock { state in state.cached.flatMap { $0.id == id ? $0.tiff : nil } }
  }

  func cache(_ tiff: ByteBuffer, for id: UInt64) {
    state.withLock { $0.cached = (id, tiff) }
  }

  var config: Config { state.withLock { $0.config } }

  var status: Status {
    state.withLock {
      Status(
        config: $0.config, count: $0.images.count, bytes: $0.bytes, dropped: $0.dropped, errors: $0.errors)
    }
  }

  /// Changes the configuration; a smaller `size` drops the oldest images (counted).
  func configure(_ change: (inout Config) -> Void) {
    state.withLock { state in
      change(&state.config)
      state.trim(maxBytes: maxBytes)
    }
  }

  /// `command/clear`: forgets every held image.
  func clear() {
    state.withLock { state in
      state.images.removeAll()
      state.bytes = 0
      state.cached = nil
    }
  }

  /// `command/initialize`: forgets every held image, the drop count and the
  /// errors, and restores the configuration the forward started with.
  func initialize() {
    state.withLock { state in
      state.images.removeAll()
      state.bytes = 0
      state.cached = nil
      state.dropped = 0
      state.errors.removeAll()
      state.config = initial
    }
  }
}
