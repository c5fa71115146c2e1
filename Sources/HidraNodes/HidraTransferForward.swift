import DequeModule
import HidraGraph
import HidraRuntime
import ZeroMQ

/// `forward` with `format: hidra-transfer`: the server side of HiDRA 4.x's
/// Transfer API, so existing HiDRA clients (`hidra.Transfer`) read from Hidra
/// unchanged (docs/hidra-compat.md).
///
/// Everything runs on the stage's thread: the signal socket (REP, `listen:`
/// port), the request socket (PULL, the next port) and one PUSH socket per
/// registered target, which the forward connects to the target's PULL. The loop
/// answers signals, takes query requests, hands queued chunks to ZeroMQ without
/// blocking, and takes the next frame from the input only while no reliable
/// (priority 0) target's backlog is full: a STREAM whose client is not reading
/// back-pressures the input edge.
enum HidraTransferForward {
  /// Files queued for one target beyond what ZeroMQ holds: at most this many
  /// bytes (a larger file still goes alone) and this many files.
  static let backlogBytes = 64 << 20
  static let backlogFiles = 64
  /// Limits against hostile signals: targets in one signal (each may need a
  /// name lookup) and target connections in all.
  static let maxTargetsPerSignal = 64
  static let maxConnections = 1024

  struct Body: StageBody {
    let signalEndpoint: String
    let requestEndpoint: String
    let chunkSize: Int
    let metadataModes: Bool
    let allowedHosts: [String]?

    init(node: Node) throws {
      let text = node["listen"]?.string ?? ""
      guard case .success(let endpoint) = Endpoint.parse(text, schemes: ["tcp"], role: .listen),
        let port = endpoint.port, port < 65535
      else {
        throw NodeSetupError(
          "a hidra-transfer forward needs 'listen: tcp://HOST:PORT' with a port below 65535")
      }
      signalEndpoint = endpoint.description
      var request = endpoint
      request.port = port + 1
      requestEndpoint = request.description
      chunkSize =
        node.optionLocations["chunk_size"] == nil
        ? HidraTransfer.defaultChunkSize : Int(clamping: node["chunk_size"]?.bytes ?? 0)
      metadataModes = node["metadata"]?.boolean ?? true
      allowedHosts = node["allowed_hosts"]?.list?.compactMap(\.string)
    }

    mutating func run(_ context: StageContext) throws {
      let server = try TransferServer(body: self, context: context)
      try server.run()
    }
  }
}

/// One registration: an appid's targets in one mode, in the order it gave them.
private struct Registration {
  struct Entry {
    var key: String
    var priority: Int
    var regex: Regex<AnyRegexOutput>
    /// Query modes: NEXT requests not yet answered.
    var pending = 0
  }
  var appid: String
  var mode: HidraTransfer.Mode
  var entries: [Entry]
  /// Stream: whose turn it is; query: where the search for a requester starts.
  var turn = 0
  /// Newer registrations have larger serials.
  var serial: Int

  var keys: Set<String> { Set(entries.map(\.key)) }
}

/// A file waiting to go to one target.
private struct Outgoing {
  let frame: Frame
  let metadata: HidraTransfer.FileMetadata
  let metadataOnly: Bool
  var chunkCount: Int {
    metadataOnly ? 1 : max(1, (frame.byteCount + metadata.chunkSize - 1) / metadata.chunkSize)
  }
}

/// The connection to one target address: a PUSH socket connected to the
/// client's PULL, and the files queued for it. Chunks of one file go out
/// contiguously, in order; the next file starts only after the last chunk of the
/// one before was handed to ZeroMQ, so files never interleave.
private final class TargetConnection {
  let key: String
  let socket: Socket
  var queue = Deque<Outgoing>()
  var queuedBytes = 0
  /// The next chunk of `queue.first` to send.
  var nextChunk = 0
  /// That chunk's message, built but refused by ZeroMQ (queue full); empty otherwise.
  var held = MultipartMessage(minimumCapacity: 2)
  /// Some registration holding this target asked for reliable delivery (priority 0).
  var reliable = true

  init(key: String, highWaterMark: Int32) throws {
    self.key = key
    socket = try Socket(.push, context: SharedZMQ.context)
    try socket.setOption(.linger, 0)
    try socket.setOption(.sendHighWaterMark, highWaterMark)
    // The client binds after its START: ZeroMQ keeps connecting and queues meanwhile.
    try socket.connect("tcp://" + key)
  }

  var isFull: Bool {
    !queue.isEmpty
      && (queuedBytes >= HidraTransferForward.backlogBytes
        || queue.count >= HidraTransferForward.backlogFiles)
  }

  func enqueue(_ file: Outgoing) {
    queue.append(file)
    queuedBytes += file.metadataOnly ? 0 : file.frame.byteCount
  }

  /// Hands queued chunks to ZeroMQ until it refuses one; returns the files
  /// completed (for the counters).
  func flush() throws -> [Outgoing] {
    var done: [Outgoing] = []
    while let file = queue.first {
      if held.isEmpty { Self.build(file, chunk: nextChunk, into: &held) }
      guard try socket.trySend(&held) else { break }
      nextChunk += 1
      if nextChunk == file.chunkCount {
        queue.removeFirst()
        queuedBytes -= file.metadataOnly ? 0 : file.frame.byteCount
        nextChunk = 0
        done.append(file)
      }
    }
    return done
  }

  /// `[metadata JSON, payload]`: a data chunk (the payload bytes without a copy
  /// when the chunk lies in one part of the frame), or a metadata message
  /// (`null` as payload).
  static func build(_ file: Outgoing, chunk: Int, into message: inout MultipartMessage) {
    message.removeAll()
    guard !file.metadataOnly else {
      message.append(file.metadata.json(chunk: nil))
      message.append("null")
      return
    }
    message.append(file.metadata.json(chunk: chunk))
    let start = chunk * file.metadata.chunkSize
    let end = min(file.frame.byteCount, start + file.metadata.chunkSize)
    var slices: [(Payload, Range<Int>)] = []
    var partStart = 0
    for part in file.frame.parts {
      let partEnd = partStart + part.count
      let low = max(start, partStart)
      let high = min(end, partEnd)
      if low < high { slices.append((part, (low - partStart)..<(high - partStart))) }
      partStart = partEnd
    }
    if slices.count == 1, let (part, range) = slices.first {
      message.append(WireMessages.message(part, UnsafeRawBufferPointer(rebasing: part.bytes[range])))
      return
    }
    var payload = Message(uninitializedCount: end - start)
    payload.withUnsafeMutableBytes { target in
      var offset = 0
      for (part, range) in slices {
        let source = UnsafeRawBufferPointer(rebasing: part.bytes[range])
        UnsafeMutableRawBufferPointer(rebasing: target[offset..<(offset + source.count)]).copyMemory(
          from: source)
        offset += source.count
      }
    }
    message.append(payload)
  }
}

/// The server's state and loop; lives on the stage's thread only.
private final class TransferServer {
  let body: HidraTransferForward.Body
  let context: StageContext
  let signalSocket: Socket
  let requestSocket: Socket
  let resolver = HostResolver()
  /// `allowed_hosts` as lower-case names and their addresses; nil allows every host.
  var allowed: Set<String>?
  var registrations: [Registration] = []
  var connections: [String: TargetConnection] = [:]
  var serial = 0
  /// The watched directory of the current series (`path` of its start), for `source_path`.
  var sourcePath = ""
  let targetHighWaterMark: Int32

  init(body: HidraTransferForward.Body, context: StageContext) throws {
    self.body = body
    self.context = context
    signalSocket = try Socket(.rep, context: SharedZMQ.context)
    try signalSocket.setOption(.linger, 0)
    try signalSocket.setOption(.maxMessageSize, 1 << 20)
    try signalSocket.bind(body.signalEndpoint)
    requestSocket = try Socket(.pull, context: SharedZMQ.context)
    try requestSocket.setOption(.linger, 0)
    try requestSocket.setOption(.maxMessageSize, 64 << 10)
    try requestSocket.bind(body.requestEndpoint)
    // ZeroMQ counts messages: about 32 MiB of chunks per target, at least 4 messages.
    targetHighWaterMark = Int32(max(4, min(1000, (32 << 20) / max(body.chunkSize, 1))))
    if let hosts = body.allowedHosts {
      var set = Set<String>()
      for host in hosts {
        set.insert(host.lowercased())
        for address in resolver.addresses(of: host) { set.insert(address) }
      }
      allowed = set
    }
    Log.info(
      "\(context.node.name): HiDRA Transfer API on \(body.signalEndpoint) (signals), \(body.requestEndpoint) (requests)"
    )
  }

  func run() throws {
    var inputEnded = false
    var drainDeadline: UInt64?
    while true {
      try serveSockets()
      try flushAll()
      let backlog = connections.values.contains { !$0.queue.isEmpty }
      if inputEnded {
        if context.isAborted || !backlog { break }
        let deadline = drainDeadline ?? monotonicNanos() + 5_000_000_000
        drainDeadline = deadline
        if monotonicNanos() >= deadline { break }
      } else if !connections.values.contains(where: { $0.reliable && $0.isFull }) {
        switch context.receive(waitingAtMost: backlog ? .zero : .milliseconds(5)) {
        case .frame(let frame):
          handle(frame)
          continue
        case .ended: inputEnded = true
        case .nothingYet: if !backlog { continue }
        }
      }
      try wait(timeout: .milliseconds(5))
    }
    // Give what ZeroMQ holds a few seconds to reach the clients, unless aborted.
    let linger: Int32 = context.isAborted ? 0 : 5000
    for connection in connections.values { try? connection.socket.setOption(.linger, linger) }
    connections.removeAll()
  }

  /// Waits until a signal or request arrives, or the first target with a backlog
  /// can take more, or `timeout` passes.
  func wait(timeout: Duration) throws {
    if let blocked = connections.values.first(where: { !$0.queue.isEmpty }) {
      _ = try ZMQ.poll(
        signalSocket, .readable, requestSocket, .readable, blocked.socket, .writable, timeout: timeout)
    } else {
      _ = try ZMQ.poll(signalSocket, .readable, requestSocket, .readable, timeout: timeout)
    }
  }

  func flushAll() throws {
    for connection in connections.values where !connection.queue.isEmpty {
      for file in try connection.flush() {
        context.counters.framesOut.add(1, ordering: .relaxed)
        context.counters.bytesOut.add(file.metadataOnly ? 0 : file.frame.byteCount, ordering: .relaxed)
      }
    }
  }

  // MARK: - Signals and requests

  /// Answers the signals and takes the requests that are waiting (at most 64
  /// of each per turn, so a flood of them cannot stall the files).
  func serveSockets() throws {
    for _ in 0..<64 {
      guard var message = try signalSocket.tryReceiveMultipart() else { break }
      let reply = answer(&message)
      var out = MultipartMessage(minimumCapacity: reply.count)
      for frame in reply { out.append(frame) }
      // A REP reply never waits: ZeroMQ drops it if the client has gone.
      _ = try signalSocket.trySend(&out)
    }
    for _ in 0..<64 {
      guard var message = try requestSocket.tryReceiveMultipart() else { break }
      request(&message)
    }
  }

  /// The reply to one signal, in HiDRA's order of checks (docs/hidra-compat.md).
  func answer(_ message: inout MultipartMessage) -> [String] {
    let invalid = ["NO_VALID_SIGNAL"]
    guard message.count == 4 else {
      context.reportError("bad-signal", "a signal of \(message.count) frames, expected 4: NO_VALID_SIGNAL")
      return invalid
    }
    let texts = (0..<4).map { index in
      message.withPart(at: index) { $0.withUnsafeBytes { String(validating: $0, as: UTF8.self) } }
    }
    let signal = texts[2].flatMap(HidraTransfer.Signal.init)
    // A STOP never gets an error reply (the client would send STOP again, forever).
    if let signal, let (mode, force) = signal.stopping {
      guard let appid = texts[1], let targets = texts[3] else { return ["NO_OPEN_CONNECTION_FOUND"] }
      return stop(mode, appid: appid, targets: targets, force: force, signal: signal)
    }
    if let index = texts.firstIndex(where: { $0 == nil }) {
      context.reportError("bad-signal", "frame \(index + 1) of a signal is not UTF-8: NO_VALID_SIGNAL")
      return invalid
    }
    let (version, appid, signalText, targetsText) = (texts[0]!, texts[1]!, texts[2]!, texts[3]!)
    guard let signal else {
      context.reportError("bad-signal", "unknown signal '\(signalText.prefix(64))': NO_VALID_SIGNAL")
      return invalid
    }
    guard let targets = HidraTransfer.parseTargets(targetsText),
      targets.count <= HidraTransferForward.maxTargetsPerSignal, !targets.isEmpty || signal == .getVersion
    else {
      context.reportError(
        "bad-signal", "\(signal.text) with a target list that is not valid: NO_VALID_SIGNAL")
      return invalid
    }
    var regexes: [Regex<AnyRegexOutput>] = []
    for target in targets {
      guard let regex = try? Regex(target.pattern) else {
        context.reportError(
          "bad-signal",
          "\(signal.text) with a pattern that does not compile: '\(target.pattern)': NO_VALID_SIGNAL")
        return invalid
      }
      regexes.append(regex)
    }
    if !version.isEmpty,
      HidraTransfer.majorVersion(version) != HidraTransfer.majorVersion(HidraTransfer.version)
    {
      context.reportError(
        "version-conflict", "a client of version '\(version.prefix(32))' (this is \(HidraTransfer.version))")
      return ["VERSION_CONFLICT", HidraTransfer.version]
    }
    var keys: [String] = []
    for target in targets {
      guard isAllowed(target.host), let key = resolver.key(host: target.host, port: target.port) else {
        context.reportError("host-not-allowed", "\(signal.text) for host '\(target.host)': NO_VALID_HOST")
        return ["NO_VALID_HOST"]
      }
      keys.append(key)
    }
    switch signal {
    case .start(let mode):
      guard !mode.isMetadata || body.metadataModes else {
        context.reportError(
          "storing-disabled", "\(signal.text) while metadata modes are off: STORING_DISABLED")
        return ["STORING_DISABLED", HidraTransfer.version]
      }
      let entries = zip(zip(keys, targets), regexes).map { pair, regex in
        Registration.Entry(key: pair.0, priority: pair.1.priority, regex: regex)
      }
      let added = Set(keys).subtracting(connections.keys).count
      guard connections.count + added <= HidraTransferForward.maxConnections else {
        context.reportError(
          "too-many-targets",
          "\(signal.text) would pass \(HidraTransferForward.maxConnections) targets: NO_VALID_HOST")
        return ["NO_VALID_HOST"]
      }
      do {
        try register(appid: appid, mode: mode, entries: entries)
      } catch {
        pruneConnections()
        // Only a ZeroMQ failure to make a socket (e.g. out of descriptors) ends here.
        context.reportError("connect-failed", "cannot connect to a target of \(signal.text): \(error)")
        return ["NO_VALID_HOST"]
      }
      return [signal.text]
    default:
      return ["GET_VERSION", HidraTransfer.version]
    }
  }

  func isAllowed(_ host: String) -> Bool {
    guard let allowed else { return true }
    if allowed.contains(host.lowercased()) { return true }
    return resolver.addresses(of: host).contains { allowed.contains($0) }
  }

  /// A START: replaces the appid's registration in the same family (stream or
  /// query) whose addresses are a subset or superset of these, else adds one.
  func register(appid: String, mode: HidraTransfer.Mode, entries: [Registration.Entry]) throws {
    var unique: [Registration.Entry] = []
    for entry in entries where !unique.contains(where: { $0.key == entry.key }) { unique.append(entry) }
    for entry in unique where connections[entry.key] == nil {
      connections[entry.key] = try TargetConnection(key: entry.key, highWaterMark: targetHighWaterMark)
    }
    serial += 1
    let keys = Set(unique.map(\.key))
    if let index = registrations.lastIndex(where: {
      $0.appid == appid && $0.mode.isQuery == mode.isQuery
        && ($0.keys.isSubset(of: keys) || $0.keys.isSuperset(of: keys))
    }) {
      let old = registrations[index]
      for position in unique.indices {
        unique[position].pending = old.entries.first { $0.key == unique[position].key }?.pending ?? 0
      }
      registrations[index] = Registration(appid: appid, mode: mode, entries: unique, serial: serial)
    } else {
      registrations.append(Registration(appid: appid, mode: mode, entries: unique, serial: serial))
    }
    pruneConnections()
  }

  /// STOP (the sender's appid) or FORCE_STOP (every appid): removes these
  /// addresses from every registration of the mode's family. Never an error
  /// reply: the echo, or NO_OPEN_CONNECTION_FOUND.
  func stop(
    _ mode: HidraTransfer.Mode, appid: String, targets: String, force: Bool, signal: HidraTransfer.Signal
  )
    -> [String]
  {
    let notFound = ["NO_OPEN_CONNECTION_FOUND"]
    guard let addresses = HidraTransfer.parseAddresses(targets) else { return notFound }
    let keys = Set(
      addresses.map { resolver.key(host: $0.host, port: $0.port) ?? "\($0.host.lowercased()):\($0.port)" })
    var removed = false
    for index in registrations.indices
    where registrations[index].mode.isQuery == mode.isQuery && (force || registrations[index].appid == appid)
    {
      let before = registrations[index].entries.count
      registrations[index].entries.removeAll { keys.contains($0.key) }
      if registrations[index].entries.count != before { removed = true }
    }
    registrations.removeAll { $0.entries.isEmpty }
    pruneConnections()
    return removed ? [signal.text] : notFound
  }

  /// Closes (linger 0, dropping what they hold) the connections no registration
  /// uses any more, and updates which ones are reliable.
  func pruneConnections() {
    var reliable: [String: Bool] = [:]
    for registration in registrations {
      for entry in registration.entries {
        reliable[entry.key] = (reliable[entry.key] ?? false) || entry.priority == 0
      }
    }
    for key in Array(connections.keys) {
      if let isReliable = reliable[key] {
        connections[key]?.reliable = isReliable
      } else {
        connections[key] = nil
      }
    }
  }

  /// `[NEXT, "host:port"]` or `[CANCEL, "host:port"]`; no reply.
  func request(_ message: inout MultipartMessage) {
    func text(_ index: Int) -> String? {
      message.withPart(at: index) { $0.withUnsafeBytes { String(validating: $0, as: UTF8.self) } }
    }
    guard message.count == 2, let command = text(0), let address = text(1),
      command == "NEXT" || command == "CANCEL", let (host, port) = HidraTransfer.splitAddress(address)
    else {
      context.reportError("bad-request", "a query request that is not [NEXT|CANCEL, \"host:port\"]")
      return
    }
    let key = resolver.key(host: host, port: port) ?? "\(host.lowercased()):\(port)"
    if command == "CANCEL" {
      for index in registrations.indices where registrations[index].mode.isQuery {
        for entry in registrations[index].entries.indices where registrations[index].entries[entry].key == key
        {
          registrations[index].entries[entry].pending = 0
        }
      }
      return
    }
    // NEXT: one more request, in the newest query registration holding the address.
    let holders = registrations.indices.filter {
      registrations[$0].mode.isQuery && registrations[$0].entries.contains { $0.key == key }
    }
    guard let newest = holders.max(by: { registrations[$0].serial < registrations[$1].serial }),
      let entry = registrations[newest].entries.firstIndex(where: { $0.key == key })
    else {
      context.reportError(
        "unknown-target", "NEXT for '\(address.prefix(64))', which no query registration holds")
      return
    }
    registrations[newest].entries[entry].pending += 1
  }

  // MARK: - Frames

  func handle(_ frame: Frame) {
    switch frame.kind {
    case .seriesStart:
      sourcePath = frame.meta.attributes["path"] ?? ""
      return
    case .seriesEnd: return
    case .data: break
    }
    guard !registrations.isEmpty else { return }
    let attributes = frame.meta.attributes
    guard let (relativePath, filename) = HidraTransfer.splitName(frame.meta.name) else {
      context.reportError(
        "unsafe-name", "frame name '\(frame.meta.name.prefix(128))' is not a safe relative path")
      return
    }
    let created = HidraTransfer.seconds(
      nanos: frame.meta.createdNanos > 0 ? frame.meta.createdNanos : wallNanos())
    let modified = attributes["mtime_ns"].flatMap { UInt64($0) }.map(HidraTransfer.seconds(nanos:)) ?? created
    let data = HidraTransfer.FileMetadata(
      sourcePath: sourcePath, relativePath: relativePath, filename: filename, filesize: frame.byteCount,
      modTime: modified, createTime: created, chunkSize: body.chunkSize)
    var stored = data
    if let path = attributes["stored_path"] {
      guard let (storedRelative, storedName) = HidraTransfer.splitName(path) else {
        context.reportError("unsafe-name", "stored_path '\(path.prefix(128))' is not a safe relative path")
        return
      }
      stored.relativePath = storedRelative
      stored.filename = storedName
      // An absolute stored_path keeps its full path in relative_path below "/".
      stored.sourcePath = attributes["stored_root"] ?? (path.hasPrefix("/") ? "/" : "")
    }
    for index in registrations.indices {
      let mode = registrations[index].mode
      if !mode.isMetadata && frame.byteCount == 0 { continue }  // data modes send no empty files
      let matchName = mode.isMetadata ? stored.filename : filename
      let count = registrations[index].entries.count
      var chosen: Int?
      if mode.isQuery {
        for step in 0..<count {
          let position = (registrations[index].turn + step) % count
          let entry = registrations[index].entries[position]
          if entry.pending > 0, HidraTransfer.matches(entry.regex, matchName) {
            chosen = position
            registrations[index].entries[position].pending -= 1
            break
          }
        }
        if let chosen { registrations[index].turn = chosen + 1 }
      } else {
        let position = registrations[index].turn % count
        if HidraTransfer.matches(registrations[index].entries[position].regex, matchName) {
          chosen = position
          registrations[index].turn = position + 1
        }
      }
      guard let chosen else { continue }
      let entry = registrations[index].entries[chosen]
      guard let connection = connections[entry.key] else { continue }
      if entry.priority > 0 && connection.isFull {
        context.reportError(
          "target-full",
          "dropped '\(frame.meta.name.prefix(128))' for \(entry.key): its queue is full (priority \(entry.priority))"
        )
        continue
      }
      // A metadata message holds no payload: do not keep the bytes alive for it.
      let file = mode.isMetadata ? Frame(kind: .data, meta: frame.meta) : frame
      connection.enqueue(
        Outgoing(frame: file, metadata: mode.isMetadata ? stored : data, metadataOnly: mode.isMetadata))
    }
  }
}
