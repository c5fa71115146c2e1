import HidraGraph
import HidraRuntime
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// `directory`: files appearing in a watched directory (PILATUS and any file-writing detector).
public enum DirectorySource {
  public static let spec = NodeTypeSpec(
    name: "directory", kind: .source,
    summary: "files that appear in a watched directory tree",
    details: """
      Watches `path` with inotify (no polling) and sends each file once it is complete: closed after \
      writing, or moved in. Each file is one data frame of series 1, named by its path relative to \
      `path` (so a store can mirror the tree), with attributes `mtime_ns` and `size`; files larger \
      than `chunk_size` are read in parts of that size. Files found by a scan instead of by their \
      close (at start-up, in a new subdirectory, after the kernel's event queue overflowed) are sent \
      once unmodified for 100 ms (or `settle`, if longer). A file is sent once per version (inode, \
      size, mtime): a rescan never sends it again, a rewrite closed later is sent again. On stop, \
      files still settling are waited for (at most `settle`, or 100 ms), then the series ends. \
      `on_done` acts on the original file only after every guaranteed sink downstream has confirmed \
      it (a store once it is durable, a push forward once its consumer acknowledged), and only if \
      the file is still the version that was sent; a file any guaranteed sink failed to take is kept \
      and counted (`not-confirmed`). `move:DIR` keeps the relative path below DIR, which must be \
      outside `path`; on stop the source waits for the confirmations of what it sent.
      """,
    options: [
      OptionSpec("path", .path(.directory), required: true, doc: "The directory to watch."),
      OptionSpec(
        "recursive", .boolean, default: "true",
        doc: "Also watch subdirectories, including ones created later."),
      OptionSpec("include", .list(.glob), doc: "Only files whose relative path matches one of these globs."),
      OptionSpec(
        "exclude", .list(.glob),
        doc: "Skip files whose relative path matches one of these globs (wins over include)."),
      OptionSpec(
        "settle", .duration, default: "0s",
        doc: "Wait this long after a file closes before sending it, for writers that reopen files."),
      OptionSpec(
        "existing", .choice(["send", "skip"]), default: "send",
        doc: "What to do with files present at start-up."),
      OptionSpec(
        "on_done", .choice(["keep", "delete"], prefixes: ["move:"]), default: "keep",
        doc:
          "After every guaranteed sink confirmed a file: keep it, delete it, or move it under DIR (`move:DIR`)."
      ),
      OptionSpec(
        "chunk_size", .size(min: 4096), default: "8MiB",
        doc: "Files larger than this travel in chunks of this size."),
    ],
    example: """
      pilatus:
        type: directory
        path: /ramdisk/pilatus
        include: ["**/*.cbf"]
        on_done: delete
      """,
    touchesPayload: true,
    cleansUp: { node in (node["on_done"]?.string ?? "keep") == "keep" ? nil : "on_done" })
}

extension DirectorySource {
  /// Event-queue overflows seen by every directory source of this process (each
  /// one recovered by a rescan); for diagnostics and tests.
  static let overflowsSeen = Atomic<Int>(0)
  /// How long a file found by a scan (rather than by its close) must be
  /// unmodified before it is sent: it may still be being written.
  static let scanQuietNanos: UInt64 = 100_000_000
  static let watchMask =
    Inotify.closeWrite | Inotify.movedTo | Inotify.movedFrom | Inotify.create | Inotify.delete
    | Inotify.onlyDirectory

  /// The running source.
  ///
  /// Every directory is watched before it is listed, so a file is either seen
  /// by the listing or its close arrives as an event (or both: `pending` is
  /// keyed by path, and `sent` remembers the version sent). A version is the
  /// file's inode, size and modification time: a close or a rescan that finds
  /// the version already sent sends nothing, a rewritten file is sent again.
  struct Body: StageBody {
    let root: String
    let recursive: Bool
    let include: [Glob]
    let exclude: [Glob]
    let settleNanos: UInt64
    let sendExisting: Bool
    let chunkSize: Int
    let onDone: OnDone
    /// Files sent and waiting for their sinks' confirmation (`on_done` other than keep).
    let settled = SettledQueue<Done>()
    var outstanding = 0

    enum OnDone: Equatable {
      case keep, delete
      case move(String)
    }

    struct Done: Sendable {
      var path: String
      var version: Version
    }

    struct Version: Equatable, Sendable {
      var inode: UInt64
      var size: Int
      var mtimeNanos: UInt64
    }

    /// A file waiting to be sent: `closed` when an event said it is complete,
    /// otherwise found by a scan. Only the queue entry with the same generation
    /// is live, so restarting the wait is pushing a new entry.
    struct Pending {
      var generation: UInt64
      var closed: Bool
    }

    /// Entries in deadline order (every entry of one queue waits the same time).
    struct DelayQueue {
      var items: [(path: String, generation: UInt64, deadline: UInt64)] = []
      var head = 0
      var first: (path: String, generation: UInt64, deadline: UInt64)? {
        head < items.count ? items[head] : nil
      }
      mutating func push(_ path: String, _ generation: UInt64, _ deadline: UInt64) {
        items.append((path, generation, deadline))
      }
      mutating func removeFirst() {
        head += 1
        if head == items.count {
          items.removeAll(keepingCapacity: true)
          head = 0
        } else if head > 4096, head * 2 > items.count {
          items.removeFirst(head)
          head = 0
        }
      }
    }

    private enum Sent { case sent, skipped, stop }
    enum ScanMode { case queue, remember }
    private struct ShortRead: Error {}

    private var watches: [Int32: String] = [:]
    private var sent: [String: Version] = [:]
    private var pending: [String: Pending] = [:]
    private var closedQueue = DelayQueue()
    private var scannedQueue = DelayQueue()
    private var generation: UInt64 = 0
    private var id: UInt64 = 0
    private var index = 0
    private var overflowed = false
    private var overflows = 0

    init(node: Node) {
      var path = node["path"]?.string ?? "."
      while path.count > 1, path.hasSuffix("/") { path.removeLast() }
      root = path
      recursive = node["recursive"]?.boolean ?? true
      func globs(_ option: String) -> [Glob] {
        (node[option]?.list ?? []).compactMap { $0.string.flatMap { try? Glob.parse($0).get() } }
      }
      include = globs("include")
      exclude = globs("exclude")
      settleNanos = UInt64((node["settle"]?.seconds ?? 0) * 1e9)
      sendExisting = node["existing"]?.string != "skip"
      chunkSize = Int(clamping: node["chunk_size"]?.bytes ?? 8 << 20)
      switch node["on_done"]?.string ?? "keep" {
      case "keep": onDone = .keep
      case "delete": onDone = .delete
      case let other:
        var target = String(other.dropFirst("move:".count))
        while target.count > 1, target.hasSuffix("/") { target.removeLast() }
        onDone = .move(target)
      }
    }

    var scanWaitNanos: UInt64 { max(settleNanos, DirectorySource.scanQuietNanos) }

    mutating func run(_ context: StageContext) throws {
      if case .move(let target) = onDone {
        let resolvedRoot = Self.resolved(root)
        let resolvedTarget = Self.resolved(target)
        if resolvedTarget == resolvedRoot || resolvedTarget.hasPrefix(resolvedRoot + "/") {
          throw NodeSetupError("on_done 'move:\(target)' is inside the watched path '\(root)'")
        }
      }
      let inotify = try Inotify()
      // Watch (and list) first: the series start tells that the watches are in place.
      guard try watchTree("", inotify, context, sendExisting ? .queue : .remember) else {
        throw NodeSetupError("cannot watch '\(root)'")
      }
      id += 1
      guard context.emit(.seriesStart(1, id: id, attributes: ["path": root])) else { return }
      while !context.isStopping {
        // While confirmations are due, look for them often.
        try readEvents(inotify, context, timeoutMillis: waitMillis(max: outstanding > 0 ? 5 : 100))
        guard sendDue(context) else { return }
        finishConfirmed(context)
      }
      // Drain: events already queued, then files settling, for at most `settle`
      // (or the scan wait) more.
      let drainEnd = monotonicNanos() + scanWaitNanos
      try readEvents(inotify, context, timeoutMillis: 0)
      guard sendDue(context) else { return }
      while !context.isAborted, !pending.isEmpty, monotonicNanos() < drainEnd {
        try readEvents(inotify, context, timeoutMillis: waitMillis(max: 10))
        guard sendDue(context) else { return }
      }
      if context.isAborted { return }
      if !pending.isEmpty {
        Log.info(
          "\(context.node.name): \(pending.count) files still settling when the source stopped were not sent")
      }
      if overflows > 0 {
        Log.info(
          "\(context.node.name): the inotify queue overflowed \(overflows) times; each was recovered by a rescan"
        )
      }
      id += 1
      context.emit(.seriesEnd(1, id: id, frames: index))
      // The sinks finish what they hold; act on each file as it is confirmed.
      if outstanding > 0 {
        Log.info("\(context.node.name): waiting for sinks to confirm \(outstanding) file(s)")
      }
      while outstanding > 0 && !context.isAborted {
        finishConfirmed(context)
        if outstanding > 0 { usleep(2000) }
      }
      if outstanding > 0 {
        Log.info(
          "\(context.node.name): \(outstanding) file(s) were not confirmed before the abort; they are kept")
      }
    }

    /// Deletes or moves the files every guaranteed sink confirmed; keeps (and
    /// counts) the others.
    mutating func finishConfirmed(_ context: StageContext) {
      guard outstanding > 0 else { return }
      for (done, confirmed) in settled.take() {
        outstanding -= 1
        guard confirmed else {
          context.reportError(
            "not-confirmed", "kept '\(done.path)': a guaranteed sink did not confirm it")
          continue
        }
        let full = root + "/" + done.path
        var info = stat()
        guard lstat(full, &info) == 0, info.st_mode & S_IFMT == S_IFREG, Self.version(info) == done.version
        else {
          // Rewritten (it will be sent again) or gone: not ours to remove.
          continue
        }
        switch onDone {
        case .keep: break
        case .delete:
          if unlink(full) != 0 {
            context.reportError("on-done", "cannot delete '\(done.path)': \(Inotify.errorText())")
          } else {
            sent[done.path] = nil
          }
        case .move(let target):
          let destination = target + "/" + done.path
          let parent = String(destination[..<(destination.lastIndex(of: "/") ?? destination.startIndex)])
          do {
            try StoreNode.Body.makeDirectories(parent, mode: 0o755)
          } catch {
            context.reportError("on-done", "cannot move '\(done.path)': \(error)")
            continue
          }
          if rename(full, destination) != 0 {
            context.reportError(
              "on-done", "cannot move '\(done.path)' to '\(destination)': \(Inotify.errorText())")
          } else {
            sent[done.path] = nil
          }
        }
      }
    }

    /// `path` made absolute and free of symbolic links where it exists.
    static func resolved(_ path: String) -> String {
      guard let real = realpath(path, nil) else {
        if path.hasPrefix("/") { return path }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX))
        guard getcwd(&buffer, buffer.count) != nil else { return path }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + "/"
          + path
      }
      defer { free(real) }
      return String(cString: real)
    }

    /// Milliseconds until the next file is due, at most `max`.
    func waitMillis(max: UInt64) -> Int32 {
      let next = [closedQueue.first?.deadline, scannedQueue.first?.deadline].compactMap { $0 }.min()
      guard let next else { return Int32(max) }
      let now = monotonicNanos()
      return next <= now ? 0 : Int32(min(max, (next - now + 999_999) / 1_000_000))
    }

    /// Reads the queued events (a few buffers at most, so due files go out
    /// between them) and handles them; rescans the tree after an overflow.
    mutating func readEvents(_ inotify: borrowing Inotify, _ context: StageContext, timeoutMillis: Int32)
      throws
    {
      var timeout = timeoutMillis
      for _ in 0..<8 {
        let count = try inotify.read(timeoutMillis: timeout) { event in try handle(event, inotify, context) }
        if count == 0 { break }
        timeout = 0
      }
      if overflowed {
        overflowed = false
        overflows += 1
        DirectorySource.overflowsSeen.add(1, ordering: .relaxed)
        if overflows == 1 {
          Log.info("\(context.node.name): the inotify event queue overflowed; rescanning '\(root)'")
        }
        _ = try watchTree("", inotify, context, .queue)
      }
    }

    mutating func handle(_ event: Inotify.Event, _ inotify: borrowing Inotify, _ context: StageContext) throws
    {
      if event.has(Inotify.overflow) {
        overflowed = true
        return
      }
      if event.has(Inotify.ignored) {
        watches[event.watch] = nil
        return
      }
      guard let directory = watches[event.watch], !event.name.isEmpty else { return }
      let path = directory.isEmpty ? event.name : directory + "/" + event.name
      if event.has(Inotify.isDirectory) {
        if event.has(Inotify.create) || event.has(Inotify.movedTo) {
          if recursive { _ = try watchTree(path, inotify, context, .queue) }
        } else if event.has(Inotify.delete) || event.has(Inotify.movedFrom) {
          forget(directory: path, inotify)
        }
      } else if event.has(Inotify.closeWrite) || event.has(Inotify.movedTo) {
        if wanted(path) {
          generation += 1
          pending[path] = Pending(generation: generation, closed: true)
          closedQueue.push(path, generation, monotonicNanos() + settleNanos)
        }
      } else if event.has(Inotify.delete) || event.has(Inotify.movedFrom) {
        sent[path] = nil
      }
    }

    func wanted(_ path: String) -> Bool {
      if !include.isEmpty, !include.contains(where: { $0.matches(path) }) { return false }
      return !exclude.contains { $0.matches(path) }
    }

    /// A directory left the tree: stop watching it (it may come back by a
    /// move, and is then watched under its new name) and forget its files.
    mutating func forget(directory: String, _ inotify: borrowing Inotify) {
      let prefix = directory + "/"
      for (watch, path) in watches where path == directory || path.hasPrefix(prefix) {
        inotify.removeWatch(watch)
        watches[watch] = nil
      }
      for path in sent.keys where path.hasPrefix(prefix) { sent[path] = nil }
    }

    /// Watches `directory` (relative; "" is the root), then lists it: files are
    /// queued to be sent (or remembered as already there), subdirectories are
    /// watched and listed in turn when recursive. False when it could not be
    /// watched.
    mutating func watchTree(
      _ directory: String, _ inotify: borrowing Inotify, _ context: StageContext, _ mode: ScanMode
    ) throws -> Bool {
      let full = directory.isEmpty ? root : root + "/" + directory
      switch inotify.addWatch(full, mask: DirectorySource.watchMask) {
      case .success(let watch): watches[watch] = directory
      case .failure(let failure):
        // Gone again (or not a directory) before it could be watched: nothing to do.
        if failure.code == ENOENT || failure.code == ENOTDIR { return false }
        context.reportError("watch", "cannot watch '\(full)': \(failure)")
        return false
      }
      guard let stream = opendir(full) else { return true }
      var subdirectories: [String] = []
      let now = monotonicNanos()
      while let entry = readdir(stream) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { bytes in
          String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
        if name == "." || name == ".." { continue }
        let path = directory.isEmpty ? name : directory + "/" + name
        var type = Int32(entry.pointee.d_type)
        if type == Int32(DT_UNKNOWN) {
          var info = stat()
          guard lstat(root + "/" + path, &info) == 0 else { continue }
          let format = info.st_mode & S_IFMT
          type = format == S_IFDIR ? Int32(DT_DIR) : format == S_IFREG ? Int32(DT_REG) : Int32(DT_UNKNOWN)
        }
        if type == Int32(DT_DIR) {
          if recursive { subdirectories.append(path) }
        } else if type == Int32(DT_REG), wanted(path) {
          switch mode {
          case .queue:
            guard pending[path] == nil else { continue }
            generation += 1
            pending[path] = Pending(generation: generation, closed: false)
            scannedQueue.push(path, generation, now + scanWaitNanos)
          case .remember:
            var info = stat()
            if lstat(root + "/" + path, &info) == 0 { sent[path] = Self.version(info) }
          }
        }
      }
      closedir(stream)
      for subdirectory in subdirectories { _ = try watchTree(subdirectory, inotify, context, mode) }
      return true
    }

    static func version(_ info: stat) -> Version {
      Version(
        inode: UInt64(info.st_ino), size: Int(info.st_size),
        mtimeNanos: UInt64(max(0, info.st_mtim.tv_sec)) * 1_000_000_000 + UInt64(max(0, info.st_mtim.tv_nsec))
      )
    }

    /// Sends the files whose wait is over. False when the run is over.
    mutating func sendDue(_ context: StageContext) -> Bool {
      var now = monotonicNanos()
      while let item = closedQueue.first, item.deadline <= now {
        closedQueue.removeFirst()
        guard pending[item.path]?.generation == item.generation else { continue }
        pending[item.path] = nil
        if send(item.path, context) == .stop { return false }
        now = monotonicNanos()
      }
      while let item = scannedQueue.first, item.deadline <= now {
        scannedQueue.removeFirst()
        guard pending[item.path]?.generation == item.generation else { continue }
        // Found by a scan: wait until it has not been modified for a while.
        var info = stat()
        if lstat(root + "/" + item.path, &info) == 0 {
          let version = Self.version(info)
          if sent[item.path] == version {
            pending[item.path] = nil
            continue
          }
          if version.mtimeNanos > wallNanos() &- scanWaitNanos {
            generation += 1
            pending[item.path] = Pending(generation: generation, closed: false)
            scannedQueue.push(item.path, generation, now + scanWaitNanos)
            continue
          }
        }
        pending[item.path] = nil
        if send(item.path, context) == .stop { return false }
        now = monotonicNanos()
      }
      return true
    }

    /// Reads one file and emits it, unless this version was sent already.
    private mutating func send(_ path: String, _ context: StageContext) -> Sent {
      let full = root + "/" + path
      let descriptor = open(full, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
      guard descriptor >= 0 else {
        if errno == ELOOP { return .skipped }  // a symbolic link: not a file of the tree
        let reason = errno == ENOENT ? "it disappeared before it was sent" : Inotify.errorText()
        context.reportError("unreadable", "cannot read '\(path)': \(reason)")
        return .skipped
      }
      defer { close(descriptor) }
      var info = stat()
      guard fstat(descriptor, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return .skipped }
      let version = Self.version(info)
      if sent[path] == version { return .skipped }
      var parts: [Payload] = []
      do {
        var offset = 0
        repeat {
          let count = min(chunkSize, version.size - offset)
          let start = offset
          parts.append(try Payload(count: count) { try Self.read(descriptor, into: $0, at: start) })
          offset += count
        } while offset < version.size
      } catch {
        context.reportError("unreadable", "cannot read '\(path)': it shrank or failed while being read")
        return .skipped
      }
      id += 1
      let meta = FrameMeta(
        id: id, series: 1, frame: index, name: path, createdNanos: wallNanos(),
        attributes: ["mtime_ns": String(version.mtimeNanos), "size": String(version.size)])
      var frame = Frame(kind: .data, meta: meta, parts: parts)
      if onDone != .keep {
        let settled = self.settled
        let done = Done(path: path, version: version)
        frame.track(Ledger { confirmed in settled.add(done, confirmed: confirmed) })
        outstanding += 1
      }
      guard context.emit(consume frame) else { return .stop }
      sent[path] = version
      index += 1
      return .sent
    }

    private static func read(_ descriptor: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int)
      throws
    {
      var done = 0
      while done < buffer.count {
        let count = pread(descriptor, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
        if count < 0, errno == EINTR { continue }
        guard count > 0 else { throw ShortRead() }
        done += count
      }
    }
  }
}
