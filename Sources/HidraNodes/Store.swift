import HidraGraph
import HidraRuntime
import Synchronization

/// `store`: writes each data frame as a file below a root, atomically.
public enum StoreNode {
  public static let spec = NodeTypeSpec(
    name: "store", kind: .store,
    summary: "writes each frame to a file below a root directory, atomically",
    details: """
      Each data frame is written to a hidden temporary file in its target directory, synced per \
      `fsync`, then renamed into place, so no reader ever sees a partial file. Paths come from the \
      `path` template and never leave `root`: names with `..`, absolute paths or symlinks that \
      escape are rejected and counted. On a guaranteed edge a full disk or a permission error never \
      loses a frame: the store retries and back-pressure does the rest. Once a frame is durable \
      the store confirms it to its source (what directory `on_done` and file writer `delete` wait \
      for) and passes it on to any node that reads from the store, with the attribute \
      `stored_path` (its path below `root`) and `stored_root`: a forward reading from a store \
      announces stored files (e.g. hidra-transfer's metadata modes, after the file is durable).
      """,
    options: [
      OptionSpec(
        "root", .path(.exclusiveRoot), required: true, doc: "The directory files are written below."),
      OptionSpec(
        "path", .template(fields: TemplateFields.frame, attributes: true), default: "{relpath}",
        doc: "Where below `root` each frame goes. Fields: "
          + TemplateFields.frame.map { "`{\($0)}`" }.joined(separator: ", ")
          + ", `{attr.NAME}`; `{frame:06}` pads with zeros."),
      OptionSpec(
        "fsync", .choice(["none", "file", "file+dir"]), default: "file",
        doc:
          "What is synced before a frame counts as stored: nothing, the file, or the file and its directory."),
      OptionSpec(
        "on_exists", .choice(["fail", "overwrite", "rename", "skip-identical"]), default: "fail",
        doc:
          "When the target exists: count an error, replace it, store under a new name, or skip it if its bytes are the same."
      ),
      OptionSpec(
        "dir_mode", .string, default: "0755", doc: "Permissions (octal) of directories the store creates."),
      OptionSpec(
        "file_mode", .string, default: "0644", doc: "Permissions (octal) of files the store writes."),
      OptionSpec(
        "verify", .boolean, default: "false",
        doc: "Re-read every file after writing and compare its checksum."),
    ],
    example: """
      disk:
        type: store
        input: sum
        root: /gpfs/current/raw
        path: "{series}/{series}_{frame:06}.bin"
        fsync: file
      """,
    check: { check in
      for option in ["dir_mode", "file_mode"] {
        guard let text = check.node[option]?.string else { continue }
        if UInt16(text, radix: 8) == nil || text.count > 4 {
          check.error(option, "'\(option)' must be an octal permission such as 0755, got '\(text)'")
        }
      }
    },
    touchesPayload: true)
}

#if canImport(Glibc)
  import Glibc
#endif

extension StoreNode {
  /// Why a frame could not be stored.
  enum StoreError: Error, CustomStringConvertible {
    /// The frame's path is not safe below the root (never retried).
    case unsafePath(String)
    /// The target exists and `on_exists` says fail, or it differs with skip-identical (never retried).
    case exists(String)
    /// A system call failed (retried on guaranteed edges: full disk, permissions, ...).
    case system(String, Int32)
    /// `verify: true` read back different bytes (retried).
    case verifyFailed(String)

    var description: String {
      switch self {
      case .unsafePath(let path): return "unsafe path '\(path)': it must stay below the root"
      case .exists(let path): return "'\(path)' already exists"
      case .system(let call, let code): return "\(call): \(String(cString: strerror(code)))"
      case .verifyFailed(let path): return "'\(path)' read back different bytes"
      }
    }

    var kind: String {
      switch self {
      case .unsafePath: return "unsafe-path"
      case .exists: return "exists"
      case .system(_, let code): return "errno-\(code)"
      case .verifyFailed: return "verify"
      }
    }

    var isPermanent: Bool {
      switch self {
      case .unsafePath, .exists: return true
      case .system, .verifyFailed: return false
      }
    }
  }

  /// The running store.
  ///
  /// Paths are resolved component by component from a descriptor of the root with
  /// `O_NOFOLLOW`, so neither `..` nor a symlink anywhere below the root can lead a
  /// write outside it. Each file is written under a hidden temporary name in its
  /// target directory, synced per `fsync`, then renamed into place.
  struct Body: StageBody {
    let root: String
    let template: PathTemplate
    let fsyncFile: Bool
    let fsyncDir: Bool
    let onExists: String
    let dirMode: mode_t
    let fileMode: mode_t
    let verify: Bool
    let host: String
    let graphName: String
    let nodeName: String
    var rootFD: Int32 = -1
    var temporaryCounter = 0
    /// This process's id, part of every temporary name (read once, not per file).
    let pid = getpid()
    let usesClock: Bool
    /// Whether the template uses the frame name's last component (`name`, `stem`, `ext`).
    let usesBaseName: Bool
    /// The directory the last frame went to (relative components and descriptor):
    /// consecutive frames usually share one, and opening it component by component
    /// for every file was most of the cost of small files.
    var lastDirectory: (components: ArraySlice<String>, fd: Int32)?

    init(node: Node, graph: Graph) throws {
      root = node["root"]?.string ?? "."
      switch PathTemplate.parse(
        node["path"]?.string ?? "{relpath}", allowed: TemplateFields.frame, attributes: true)
      {
      case .success(let parsed): template = parsed
      case .failure(let error): throw NodeSetupError("path template: \(error.message)")
      }
      let fields = template.fields
      usesClock = fields.contains("date") || fields.contains("time")
      usesBaseName = fields.contains("name") || fields.contains("stem") || fields.contains("ext")
      let sync = node["fsync"]?.string ?? "file"
      fsyncFile = sync != "none"
      fsyncDir = sync == "file+dir"
      onExists = node["on_exists"]?.string ?? "fail"
      dirMode = mode_t(node["dir_mode"]?.string.flatMap { UInt16($0, radix: 8) } ?? 0o755)
      fileMode = mode_t(node["file_mode"]?.string.flatMap { UInt16($0, radix: 8) } ?? 0o644)
      verify = node["verify"]?.boolean ?? false
      var name = [CChar](repeating: 0, count: 256)
      gethostname(&name, name.count - 1)
      host = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
      graphName = graph.name
      nodeName = node.name
    }

    mutating func run(_ context: StageContext) throws {
      defer {
        if rootFD >= 0 { close(rootFD) }
        if let last = lastDirectory { close(last.fd) }
      }
      let guaranteed = context.node.inputs.allSatisfy { $0.qos.delivery == .guaranteed }
      let passOn = !context.output.edges.isEmpty
      while var frame = context.receive() {
        guard frame.kind == .data else {
          if passOn, !context.emit(consume frame) { return }
          continue
        }
        var delay: UInt32 = 50_000
        var attempts = 0
        while true {
          do {
            let stored = try store(frame)
            // Durable: tell the source (see Ledger), and announce it downstream.
            frame.confirm()
            if passOn {
              frame.meta.attributes["stored_path"] = stored
              frame.meta.attributes["stored_root"] = root
              if !context.emit(consume frame) { return }
            } else {
              context.counters.framesOut.add(1, ordering: .relaxed)
              context.counters.bytesOut.add(frame.byteCount, ordering: .relaxed)
            }
            break
          } catch let error as StoreError {
            // Resolve the directory afresh on the next attempt: it may be what failed
            // (removed, replaced, on a file system that went away).
            if let last = lastDirectory {
              close(last.fd)
              lastDirectory = nil
            }
            attempts += 1
            context.reportError(error.kind, "cannot store '\(frame.meta.name)': \(error)")
            // Permanent problems are counted and the frame is dropped; anything
            // else is retried on a guaranteed edge until it works or the run is
            // aborted, while back-pressure holds the producers.
            if context.isAborted {
              context.countAbandoned()
              break
            }
            if error.isPermanent || !guaranteed { break }
            if attempts == 1 {
              Log.warning("\(nodeName): retrying '\(frame.meta.name)' until it can be stored")
            }
            usleep(delay)
            delay = min(delay * 2, 2_000_000)
          }
        }
      }
    }

    mutating func openRoot() throws {
      try Self.makeDirectories(root, mode: dirMode)
      rootFD = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
      if rootFD < 0 { throw StoreError.system("open root \(root)", errno) }
    }

    static func makeDirectories(_ path: String, mode: mode_t) throws {
      var current = path.hasPrefix("/") ? "" : "."
      for component in path.split(separator: "/") {
        current += "/" + component
        if mkdir(current, mode) != 0 && errno != EEXIST { throw StoreError.system("mkdir \(current)", errno) }
      }
    }

    /// The frame's path below the root, or an error when it is unsafe.
    func relativePath(for frame: Frame) throws -> [String] {
      let name = frame.meta.name
      // The last component of the name, only when the template uses it.
      var base = ""
      if usesBaseName {
        base = String(name.split(separator: "/").last ?? "")
      }
      let dot = base.lastIndex(of: ".")
      // The date and time only when the template asks for them: localtime_r may
      // look at the time zone file on every call.
      var date = ""
      var time = ""
      if usesClock {
        let created = frame.meta.createdNanos > 0 ? frame.meta.createdNanos : wallNanos()
        var seconds = time_t(created / 1_000_000_000)
        var parts = tm()
        localtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        date = "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))"
        time = "\(two(parts.tm_hour))\(two(parts.tm_min))\(two(parts.tm_sec))"
      }
      let rendered = template.render { field -> PathTemplate.FieldValue in
        switch field {
        case "series": return .integer(frame.meta.series)
        case "frame": return .integer(frame.meta.frame)
        case "name": return .text(base)
        case "relpath": return .text(name)
        case "stem": return .text(dot.map { String(base[..<$0]) } ?? base)
        case "ext": return .text(dot.map { String(base[base.index(after: $0)...]) } ?? "")
        case "date": return .text(date)
        case "time": return .text(time)
        case "host": return .text(host)
        case "graph": return .text(graphName)
        case "node": return .text(nodeName)
        default: return .text(frame.meta.attributes[String(field.dropFirst("attr.".count))] ?? "")
        }
      }
      // Split at the byte '/', as the kernel does (a '/' that Swift's String
      // would take as part of a larger character still separates directories).
      let slash = UInt8(ascii: "/")
      let components = rendered.utf8.split(separator: slash, omittingEmptySubsequences: true).map {
        String(Substring($0))
      }
      let unsafe =
        rendered.utf8.first == slash || rendered.utf8.contains(0) || components.isEmpty
        || components.contains { $0 == ".." || $0 == "." }
      if unsafe { throw StoreError.unsafePath(rendered) }
      return components
    }

    /// Stores the frame; returns its path relative to the root.
    @discardableResult
    mutating func store(_ frame: Frame) throws -> String {
      // Opened on first use, and again after a failure, so a root that is missing
      // or not writable yet is retried like any other write problem.
      if rootFD < 0 { try openRoot() }
      let components = try relativePath(for: frame)
      let path = components.joined(separator: "/")
      let directory = try cachedDirectory(components.dropLast())
      var target = components.last!
      var existing = stat()
      if fstatat(directory, target, &existing, AT_SYMLINK_NOFOLLOW) == 0 {
        switch onExists {
        case "overwrite":
          if (existing.st_mode & S_IFMT) != S_IFREG { throw StoreError.exists(path) }
        case "rename":
          target = try freeName(for: target, in: directory)
        case "skip-identical":
          if try Self.contentEquals(frame, directory: directory, name: target) { return path }
          throw StoreError.exists(path + " (with different content)")
        default:
          throw StoreError.exists(path)
        }
      }
      temporaryCounter += 1
      let temporary = ".\(target).hidra-\(pid)-\(temporaryCounter).tmp"
      let fd = openat(directory, temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, fileMode)
      if fd < 0 { throw StoreError.system("create \(path)", errno) }
      var ok = false
      defer {
        if !ok { unlinkat(directory, temporary, 0) }
      }
      do {
        defer { close(fd) }
        try Self.writeAll(fd, frame.parts, path: path)
        if fsyncFile, fsync(fd) != 0 { throw StoreError.system("fsync \(path)", errno) }
      }
      if verify, try !Self.contentEquals(frame, directory: directory, name: temporary) {
        throw StoreError.verifyFailed(path)
      }
      if renameat(directory, temporary, directory, target) != 0 {
        throw StoreError.system("rename \(path)", errno)
      }
      ok = true
      if fsyncDir, fsync(directory) != 0 { throw StoreError.system("fsync directory of \(path)", errno) }
      if target == components.last! { return path }
      return components.dropLast().joined(separator: "/") + (components.count > 1 ? "/" : "") + target
    }

    /// The descriptor of the directory below the root, reusing the last one.
    mutating func cachedDirectory(_ components: ArraySlice<String>) throws -> Int32 {
      if let last = lastDirectory, last.components.elementsEqual(components) { return last.fd }
      let fd = try openDirectory(components)
      if let last = lastDirectory { close(last.fd) }
      lastDirectory = (components, fd)
      return fd
    }

    /// Opens (creating as needed) the directory below the root, refusing symlinks.
    func openDirectory(_ components: ArraySlice<String>) throws -> Int32 {
      var fd = dup(rootFD)
      for component in components {
        var next = openat(fd, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if next < 0 && errno == ENOENT {
          if mkdirat(fd, component, dirMode) != 0 && errno != EEXIST {
            let code = errno
            close(fd)
            throw StoreError.system("mkdir \(component)", code)
          }
          next = openat(fd, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        }
        let code = errno
        close(fd)
        if next < 0 {
          if code == ELOOP || code == ENOTDIR {
            throw StoreError.unsafePath(components.joined(separator: "/"))
          }
          throw StoreError.system("open directory \(component)", code)
        }
        fd = next
      }
      return fd
    }

    func freeName(for name: String, in directory: Int32) throws -> String {
      let dot = name.lastIndex(of: ".")
      let stem = dot.map { String(name[..<$0]) } ?? name
      let ext = dot.map { String(name[$0...]) } ?? ""
      var status = stat()
      for index in 1..<100_000 {
        let candidate = "\(stem).\(index)\(ext)"
        if fstatat(directory, candidate, &status, AT_SYMLINK_NOFOLLOW) != 0 { return candidate }
      }
      throw StoreError.exists(name)
    }

    static func writeAll(_ fd: Int32, _ parts: some Collection<Payload>, path: String) throws {
      for part in parts {
        var offset = 0
        while offset < part.count {
          let written = write(fd, part.bytes.baseAddress! + offset, part.count - offset)
          if written < 0 {
            if errno == EINTR { continue }
            throw StoreError.system("write \(path)", errno)
          }
          offset += written
        }
      }
    }

    /// True when the file `name` holds exactly the frame's bytes.
    static func contentEquals(_ frame: Frame, directory: Int32, name: String) throws -> Bool {
      let fd = openat(directory, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
      if fd < 0 { throw StoreError.system("open \(name) to compare", errno) }
      defer { close(fd) }
      var status = stat()
      guard fstat(fd, &status) == 0, Int(status.st_size) == frame.byteCount else { return false }
      let chunk = 1 << 20
      let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 64)
      defer { buffer.deallocate() }
      for part in frame.parts {
        var offset = 0
        while offset < part.count {
          let wanted = min(chunk, part.count - offset)
          let got = read(fd, buffer, wanted)
          if got < 0 && errno == EINTR { continue }
          guard got > 0, memcmp(buffer, part.bytes.baseAddress! + offset, got) == 0 else { return false }
          offset += got
        }
      }
      return true
    }
  }
}
