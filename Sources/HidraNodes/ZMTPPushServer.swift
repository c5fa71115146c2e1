import Foundation
import HidraRuntime

#if canImport(Glibc)
  import Glibc
#endif

/// The PUSH side of ZMTP 3.0 (ZeroMQ's wire protocol, RFC 23, NULL security)
/// on a listening socket, with each connected reader addressable: messages are
/// either for every reader (series start and end) or for one, in turn (images).
///
/// A ZeroMQ PUSH socket cannot do this (see `StreamForward`), so the forward
/// owns the connections. One I/O thread accepts, does the handshake (greeting,
/// then READY with `Socket-Type: PUSH`; the peer must say `PULL`), answers
/// heartbeats (PING with PONG), and writes each reader's queue with `sendmsg`
/// straight from the payloads (no copy). The stage thread hands messages over
/// through `Shared` (one lock) and waits there while every reader's queue is
/// full: the same back-pressure as a ZeroMQ PUSH socket at its high-water mark.
/// A reader that connects mid-series first gets the open series' start.
final class ZMTPPushServer {
  enum Event: Sendable {
    case connected(String)
    case disconnected(String, lost: Int)
    case refused(String, String)
  }

  /// A slice of a payload to write.
  struct Segment: Sendable {
    let payload: Payload
    let start: Int
    let count: Int
  }

  /// One message as written on the wire: frame headers and bodies.
  struct Item: Sendable {
    var segments: [Segment]
    var broadcast: Bool
    var opensSeries: Bool
    /// Counts against the reader's high-water mark (false for handshake bytes and PONGs).
    var counted = true
  }

  /// What the stage thread and the I/O thread share.
  ///
  /// `@unchecked Sendable`: every variable field is read and written with
  /// `condition` locked.
  final class Shared: @unchecked Sendable {
    let condition = NSCondition()
    var inbox: [Item] = []
    var inboxHead = 0
    /// Messages in readers' queues, not yet written.
    var queued = 0
    var stop = false
    var exited = false
    var events: [Event] = []

    var inboxCount: Int { inbox.count - inboxHead }
  }

  let shared = Shared()
  let wakeWrite: Int32
  let ipcPath: String?
  /// Images waiting for a reader with room before `send` waits.
  static let inboxLimit = 2

  /// Binds `address` (`tcp://HOST:PORT`, `tcp://*:PORT` or `ipc://PATH`) and starts the I/O thread.
  init(listen address: String, highWaterMark: Int) throws {
    let (listener, ipcPath) = try Self.listen(address)
    var pipe: [Int32] = [0, 0]
    guard Glibc.pipe(&pipe) == 0 else {
      Glibc.close(listener)
      throw NodeSetupError("pipe: \(String(cString: strerror(errno)))")
    }
    for fd in pipe { Self.setNonBlocking(fd) }
    wakeWrite = pipe[1]
    self.ipcPath = ipcPath
    let shared = shared
    let wakeRead = pipe[0]
    let thread = Thread {
      var loop = IOLoop(listener: listener, wake: wakeRead, shared: shared, highWaterMark: highWaterMark)
      loop.run()
    }
    thread.name = "hidra-zmtp"
    thread.start()
  }

  /// Non-blocking and close-on-exec.
  static func setNonBlocking(_ fd: Int32) {
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
  }

  func wake() {
    var byte: UInt8 = 1
    _ = write(wakeWrite, &byte, 1)
  }

  /// Hands a message to the I/O thread. An image waits while no reader has
  /// room; false if the run was aborted while waiting.
  func send(_ message: StreamForward.Message, broadcast: Bool, opensSeries: Bool, _ context: StageContext)
    -> Bool
  {
    let item = Item(segments: Self.encode(message), broadcast: broadcast, opensSeries: opensSeries)
    shared.condition.lock()
    defer { shared.condition.unlock() }
    while shared.inboxCount >= Self.inboxLimit {
      if context.isAborted { return false }
      _ = shared.condition.wait(until: Date(timeIntervalSinceNow: 0.1))
    }
    shared.inbox.append(item)
    wake()
    return true
  }

  /// Waits until everything handed over was written, at most `seconds` (or until aborted).
  func drain(seconds: Double, _ context: StageContext) {
    let deadline = Date(timeIntervalSinceNow: seconds)
    shared.condition.lock()
    defer { shared.condition.unlock() }
    while shared.inboxCount + shared.queued > 0, !context.isAborted, Date() < deadline {
      _ = shared.condition.wait(until: min(deadline, Date(timeIntervalSinceNow: 0.1)))
    }
    let left = shared.inboxCount + shared.queued
    if left > 0 { Log.warning("stream forward: \(left) messages never reached a reader") }
  }

  /// Stops the I/O thread (closing every connection) and waits for it.
  func close() {
    shared.condition.lock()
    shared.stop = true
    wake()
    while !shared.exited { _ = shared.condition.wait(until: Date(timeIntervalSinceNow: 0.1)) }
    shared.condition.unlock()
    Glibc.close(wakeWrite)
    if let ipcPath { unlink(ipcPath) }
  }

  func takeEvents() -> [Event] {
    shared.condition.lock()
    defer { shared.condition.unlock() }
    let events = shared.events
    shared.events.removeAll()
    return events
  }

  // MARK: - Framing

  /// ZMTP frames of a message: flags (MORE, LONG), size, body. Headers and small
  /// bodies are gathered into one buffer; large bodies stay where they are.
  static func encode(_ message: StreamForward.Message) -> [Segment] {
    var segments: [Segment] = []
    var small: [UInt8] = []
    func flushSmall() {
      guard !small.isEmpty else { return }
      segments.append(Segment(payload: Payload(copying: small), start: 0, count: small.count))
      small.removeAll(keepingCapacity: true)
    }
    for (index, part) in message.parts.enumerated() {
      let size = part.reduce(0) { $0 + $1.count }
      small += frameHeader(size: size, more: index < message.parts.count - 1, command: false)
      for payload in part where payload.count > 0 {
        if payload.count <= 4096 {
          small += payload.bytes
        } else {
          flushSmall()
          segments.append(Segment(payload: payload, start: 0, count: payload.count))
        }
      }
    }
    flushSmall()
    return segments
  }

  static func frameHeader(size: Int, more: Bool, command: Bool) -> [UInt8] {
    var flags: UInt8 = (more ? 0x01 : 0) | (command ? 0x04 : 0)
    if size > 255 {
      flags |= 0x02
      return [flags] + (0..<8).reversed().map { UInt8(truncatingIfNeeded: UInt64(size) >> ($0 * 8)) }
    }
    return [flags, UInt8(size)]
  }

  /// Our greeting: signature, version 3.0, mechanism NULL, not a server (for NULL, unused), filler.
  static let greeting: [UInt8] =
    [0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0] + Array("NULL".utf8) + [UInt8](repeating: 0, count: 16) + [0]
    + [UInt8](repeating: 0, count: 31)

  /// A command frame: name, then `body`.
  static func command(_ name: String, _ body: [UInt8]) -> [UInt8] {
    let content = [UInt8(name.utf8.count)] + Array(name.utf8) + body
    return frameHeader(size: content.count, more: false, command: true) + content
  }

  static let ready: [UInt8] = {
    let name = Array("Socket-Type".utf8)
    let value = Array("PUSH".utf8)
    let property = [UInt8(name.count)] + name + [0, 0, 0, UInt8(value.count)] + value
    return command("READY", property)
  }()

  // MARK: - Listening

  static func listen(_ address: String) throws -> (Int32, String?) {
    if address.hasPrefix("ipc://") {
      let path = String(address.dropFirst(6))
      var info = stat()
      if lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK { unlink(path) }  // stale, as libzmq does
      var socketAddress = sockaddr_un()
      socketAddress.sun_family = sa_family_t(AF_UNIX)
      let bytes = Array(path.utf8)
      guard bytes.count < MemoryLayout.size(ofValue: socketAddress.sun_path) else {
        throw NodeSetupError("ipc path too long: \(path)")
      }
      withUnsafeMutableBytes(of: &socketAddress.sun_path) { raw in
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
      }
      let fd = socket(
        AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
      guard fd >= 0 else { throw NodeSetupError("socket: \(String(cString: strerror(errno)))") }
      let bound = withUnsafePointer(to: &socketAddress) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
          bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
      }
      guard bound == 0, Glibc.listen(fd, 64) == 0 else {
        let text = String(cString: strerror(errno))
        Glibc.close(fd)
        throw NodeSetupError("cannot listen on \(address): \(text)")
      }
      return (fd, path)
    }
    guard address.hasPrefix("tcp://"), let colon = address.lastIndex(of: ":"),
      address.distance(from: address.startIndex, to: colon) > 6
    else { throw NodeSetupError("cannot listen on '\(address)': expected tcp://HOST:PORT or ipc://PATH") }
    var host = String(address[address.index(address.startIndex, offsetBy: 6)..<colon])
    let port = String(address[address.index(after: colon)...])
    if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    var hints = addrinfo()
    hints.ai_flags = AI_PASSIVE
    hints.ai_family = host == "*" ? AF_INET : AF_UNSPEC
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var list: UnsafeMutablePointer<addrinfo>?
    let status = getaddrinfo(host == "*" ? nil : host, port, &hints, &list)
    guard status == 0, let first = list else {
      throw NodeSetupError("cannot resolve '\(address)': \(String(cString: gai_strerror(status)))")
    }
    defer { freeaddrinfo(list) }
    let fd = socket(
      first.pointee.ai_family,
      Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw NodeSetupError("socket: \(String(cString: strerror(errno)))") }
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    guard bind(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0, Glibc.listen(fd, 64) == 0 else {
      let text = String(cString: strerror(errno))
      Glibc.close(fd)
      throw NodeSetupError("cannot listen on \(address): \(text)")
    }
    return (fd, nil)
  }
}

extension ZMTPPushServer {
  /// One reader's connection (I/O thread only).
  struct Connection {
    enum Phase { case greeting, ready, active }
    let fd: Int32
    let peer: String
    var phase = Phase.greeting
    var input: [UInt8] = []
    /// Messages to write, oldest first; `offset` bytes of the first are written.
    var queue: [Item] = []
    var head = 0
    var segment = 0
    var offset = 0
    /// Queued messages that count against the high-water mark (images and series frames).
    var messages = 0

    var hasOutput: Bool { head < queue.count }
  }

  /// The I/O thread's state and loop.
  struct IOLoop {
    let listener: Int32
    let wake: Int32
    let shared: Shared
    let highWaterMark: Int
    var connections: [Connection] = []
    var openSeries: Item?
    var nextReader = 0

    init(listener: Int32, wake: Int32, shared: Shared, highWaterMark: Int) {
      self.listener = listener
      self.wake = wake
      self.shared = shared
      self.highWaterMark = highWaterMark
    }

    mutating func run() {
      var buffer = [UInt8](repeating: 0, count: 64 << 10)
      while true {
        shared.condition.lock()
        let stop = shared.stop
        if !stop { distribute() }
        shared.condition.unlock()
        if stop { break }
        var fds = [
          pollfd(fd: wake, events: Int16(POLLIN), revents: 0),
          pollfd(fd: listener, events: Int16(POLLIN), revents: 0),
        ]
        for connection in connections {
          let events = Int16(POLLIN) | (connection.hasOutput ? Int16(POLLOUT) : 0)
          fds.append(pollfd(fd: connection.fd, events: events, revents: 0))
        }
        if poll(&fds, nfds_t(fds.count), 100) > 0 { handle(fds, &buffer) }
        updateQueued()
      }
      for connection in connections { Glibc.close(connection.fd) }
      Glibc.close(listener)
      Glibc.close(wake)
      shared.condition.lock()
      shared.exited = true
      shared.condition.broadcast()
      shared.condition.unlock()
    }

    /// Acts on what `poll` reported.
    mutating func handle(_ fds: [pollfd], _ buffer: inout [UInt8]) {
      if fds[0].revents != 0 { while read(wake, &buffer, buffer.count) > 0 {} }
      var closed: [Int] = []
      for index in 0..<(fds.count - 2) {
        let revents = fds[index + 2].revents
        if revents == 0 { continue }
        var ok = true
        if revents & (Int16(POLLIN) | Int16(POLLHUP) | Int16(POLLERR)) != 0 { ok = receive(index, &buffer) }
        if ok, revents & Int16(POLLOUT) != 0 { ok = flush(index) }
        if !ok { closed.append(index) }
      }
      for index in closed.reversed() { drop(index) }
      if fds[1].revents & Int16(POLLIN) != 0 { accept() }
    }

    /// Moves messages from the inbox to readers' queues, in order; stops at an
    /// image no reader has room for. Called with the lock held.
    mutating func distribute() {
      var moved = false
      while shared.inboxHead < shared.inbox.count {
        let item = shared.inbox[shared.inboxHead]
        if item.broadcast {
          for index in connections.indices where connections[index].phase == .active { enqueue(item, index) }
          openSeries = item.opensSeries ? item : nil
        } else {
          let active = connections.indices.filter {
            connections[$0].phase == .active && connections[$0].messages < highWaterMark
          }
          guard !active.isEmpty else { break }
          // The next reader in turn that has room.
          let index = active.first { $0 >= nextReader } ?? active[0]
          enqueue(item, index)
          nextReader = index + 1
        }
        shared.inboxHead += 1
        moved = true
      }
      if shared.inboxHead == shared.inbox.count {
        shared.inbox.removeAll(keepingCapacity: true)
        shared.inboxHead = 0
      }
      if moved {
        // Start writing at once rather than after the next poll (a failed
        // connection is noticed and dropped by the poll).
        for index in connections.indices where connections[index].hasOutput { _ = flush(index) }
        shared.queued = connections.reduce(0) { $0 + $1.messages }
        shared.condition.broadcast()
      }
    }

    mutating func enqueue(_ item: Item, _ index: Int) {
      connections[index].queue.append(item)
      connections[index].messages += 1
    }

    /// Raw bytes (handshake, PONG) queued for one connection, not counted as a message.
    mutating func enqueueControl(_ bytes: [UInt8], _ index: Int) {
      connections[index].queue.append(
        Item(
          segments: [Segment(payload: Payload(copying: bytes), start: 0, count: bytes.count)],
          broadcast: false,
          opensSeries: false, counted: false))
    }

    mutating func updateQueued() {
      shared.condition.lock()
      shared.queued = connections.reduce(0) { $0 + $1.messages }
      shared.condition.broadcast()
      shared.condition.unlock()
    }

    func post(_ event: Event) {
      shared.condition.lock()
      shared.events.append(event)
      shared.condition.unlock()
    }

    mutating func accept() {
      while true {
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let fd = withUnsafeMutablePointer(to: &address) {
          $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            Glibc.accept(listener, $0, &length)
          }
        }
        guard fd >= 0 else { return }
        ZMTPPushServer.setNonBlocking(fd)
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        connections.append(Connection(fd: fd, peer: Self.describe(address)))
        enqueueControl(ZMTPPushServer.greeting, connections.count - 1)
        _ = flush(connections.count - 1)
      }
    }

    static func describe(_ address: sockaddr_storage) -> String {
      var address = address
      var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
      var service = [CChar](repeating: 0, count: Int(NI_MAXSERV))
      let status = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
          getnameinfo(
            $0, socklen_t(MemoryLayout<sockaddr_storage>.size), &host, socklen_t(host.count), &service,
            socklen_t(service.count), NI_NUMERICHOST | NI_NUMERICSERV)
        }
      }
      guard status == 0, host[0] != 0 else { return "a local reader" }
      let hostText = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
      let serviceText = String(
        decoding: service.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
      return hostText + ":" + serviceText
    }

    /// Reads what the peer sent and acts on it; false when the connection is over.
    mutating func receive(_ index: Int, _ buffer: inout [UInt8]) -> Bool {
      while true {
        let count = buffer.withUnsafeMutableBytes { recv(connections[index].fd, $0.baseAddress, $0.count, 0) }
        if count == 0 { return false }
        if count < 0 { return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR }
        connections[index].input += buffer[0..<count]
        guard parse(index) else { return false }
        if count < buffer.count { return true }
      }
    }

    /// Handles complete greetings and frames in the input; false to close.
    mutating func parse(_ index: Int) -> Bool {
      if connections[index].phase == .greeting {
        let input = connections[index].input
        if input.count >= 10, input[0] != 0xff || input[9] & 0x01 == 0 {
          return refuse(index, "not a ZMTP 3 peer (no ZMTP signature)")
        }
        if input.count >= 11, input[10] < 3 {
          return refuse(index, "speaks ZMTP \(input[10]).x; version 3 is needed")
        }
        guard input.count >= 64 else { return true }
        let mechanism = String(decoding: input[12..<32].prefix { $0 != 0 }, as: UTF8.self)
        guard mechanism == "NULL" else {
          return refuse(index, "asks for security mechanism \(mechanism); this forward offers NULL")
        }
        connections[index].input.removeFirst(64)
        connections[index].phase = .ready
        enqueueControl(ZMTPPushServer.ready, index)
      }
      while true {
        let input = connections[index].input
        guard input.count >= 2 else { return true }
        let flags = input[0]
        let long = flags & 0x02 != 0
        let headerSize = long ? 9 : 2
        guard input.count >= headerSize else { return true }
        let size = long ? input[1..<9].reduce(UInt64(0)) { $0 << 8 | UInt64($1) } : UInt64(input[1])
        guard size <= 1 << 20 else { return refuse(index, "sent a frame of \(size) bytes to a PUSH socket") }
        guard input.count >= headerSize + Int(size) else { return true }
        let body = Array(input[headerSize..<(headerSize + Int(size))])
        connections[index].input.removeFirst(headerSize + Int(size))
        guard flags & 0x04 != 0 else { continue }  // a message frame: PULL peers send none; ignored
        guard let nameLength = body.first.map(Int.init), body.count >= 1 + nameLength else {
          return refuse(index, "sent a malformed command")
        }
        let name = String(decoding: body[1..<(1 + nameLength)], as: UTF8.self)
        let rest = Array(body[(1 + nameLength)...])
        switch name {
        case "READY":
          guard connections[index].phase == .ready else { continue }
          let type = Self.property(rest, "Socket-Type")
          guard type == "PULL" else {
            return refuse(index, "is a \(type ?? "socket without a type"); a stream reader must be PULL")
          }
          connections[index].phase = .active
          post(.connected(connections[index].peer))
          // A reader joining mid-series first gets the series' start.
          if let openSeries { enqueue(openSeries, index) }
        case "PING":
          // TTL (2 bytes), then a context to echo in PONG.
          enqueueControl(ZMTPPushServer.command("PONG", Array(rest.dropFirst(2))), index)
        case "ERROR":
          let reason = rest.count > 1 ? String(decoding: rest.dropFirst(), as: UTF8.self) : "no reason"
          return refuse(index, "sent ERROR: \(reason)")
        default:
          continue
        }
      }
    }

    /// A property of a READY command: name-length(1) name value-length(4, big-endian) value.
    static func property(_ body: [UInt8], _ wanted: String) -> String? {
      var at = 0
      while at < body.count {
        let nameLength = Int(body[at])
        guard at + 1 + nameLength + 4 <= body.count else { return nil }
        let name = String(decoding: body[(at + 1)..<(at + 1 + nameLength)], as: UTF8.self)
        at += 1 + nameLength
        let valueLength = body[at..<(at + 4)].reduce(0) { $0 << 8 | Int($1) }
        at += 4
        guard at + valueLength <= body.count else { return nil }
        if name.lowercased() == wanted.lowercased() {
          return String(decoding: body[at..<(at + valueLength)], as: UTF8.self)
        }
        at += valueLength
      }
      return nil
    }

    func refuse(_ index: Int, _ reason: String) -> Bool {
      post(.refused(connections[index].peer, reason))
      return false
    }

    /// Writes as much of the queue as the socket takes; false when the connection failed.
    mutating func flush(_ index: Int) -> Bool {
      while connections[index].hasOutput {
        var vectors: [iovec] = []
        var messageIndex = connections[index].head
        var segment = connections[index].segment
        var offset = connections[index].offset
        while vectors.count < 64, messageIndex < connections[index].queue.count {
          let segments = connections[index].queue[messageIndex].segments
          if segment < segments.count {
            let piece = segments[segment]
            let base = piece.payload.bytes.baseAddress! + piece.start + offset
            vectors.append(
              iovec(iov_base: UnsafeMutableRawPointer(mutating: base), iov_len: piece.count - offset))
            segment += 1
            offset = 0
          } else {
            messageIndex += 1
            segment = 0
          }
        }
        if vectors.isEmpty {
          advance(index, by: 0)  // finishes messages without bytes (none are made)
          continue
        }
        let written = vectors.withUnsafeMutableBufferPointer { pointer -> Int in
          var header = msghdr()
          header.msg_iov = pointer.baseAddress
          header.msg_iovlen = pointer.count
          return sendmsg(connections[index].fd, &header, Int32(MSG_NOSIGNAL))
        }
        if written < 0 { return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR }
        advance(index, by: written)
        if written < vectors.reduce(0, { $0 + $1.iov_len }) { return true }
      }
      return true
    }

    /// Marks `written` bytes as sent, finishing the messages they complete.
    mutating func advance(_ index: Int, by written: Int) {
      var left = written
      while connections[index].hasOutput {
        let segments = connections[index].queue[connections[index].head].segments
        if connections[index].segment >= segments.count {
          finishMessage(index)
          continue
        }
        guard left > 0 else { break }
        let remaining = segments[connections[index].segment].count - connections[index].offset
        if left >= remaining {
          left -= remaining
          connections[index].segment += 1
          connections[index].offset = 0
        } else {
          connections[index].offset += left
          left = 0
        }
      }
    }

    mutating func finishMessage(_ index: Int) {
      let item = connections[index].queue[connections[index].head]
      connections[index].head += 1
      connections[index].segment = 0
      connections[index].offset = 0
      if item.counted { connections[index].messages -= 1 }
      if connections[index].head == connections[index].queue.count {
        connections[index].queue.removeAll(keepingCapacity: true)
        connections[index].head = 0
      } else if connections[index].head > 256 {
        connections[index].queue.removeFirst(connections[index].head)
        connections[index].head = 0
      }
    }

    mutating func drop(_ index: Int) {
      let connection = connections.remove(at: index)
      Glibc.close(connection.fd)
      if connection.phase == .active {
        post(.disconnected(connection.peer, lost: connection.messages))
      }
      if nextReader > index { nextReader -= 1 }
    }
  }
}
