import DequeModule
import Glibc
import HidraGraph
import HidraRuntime
import ZeroMQ

/// The wire messages of one frame (docs/wire.md): a header part and the payload
/// parts, or, when the payload is larger than `chunkSize`, several chunk
/// messages. Payload parts are zero-copy: ZeroMQ holds the payload until it is
/// on the wire.
struct WireMessages {
  let chunkSize: Int

  /// Calls `deliver` with each message of `frame` in order, each preceded by
  /// `envelope` (a ROUTER socket's routing id) when given. Stops early and
  /// returns false when `deliver` returns false.
  func forEach(
    _ frame: Frame, seq: UInt64? = nil, envelope: [UInt8]? = nil,
    _ deliver: (inout MultipartMessage) throws -> Bool
  ) throws -> Bool {
    let size = frame.byteCount
    guard size > chunkSize else {
      var message = MultipartMessage(minimumCapacity: 2 + frame.parts.count)
      if let envelope { message.append(envelope) }
      message.append(Message(Wire.encodeHeader(frame, seq: seq)))
      for part in frame.parts { message.append(Self.message(part, part.bytes)) }
      return try deliver(&message)
    }
    // Chunks: slices of the payload parts, in order, each at most chunkSize bytes.
    let count = (size + chunkSize - 1) / chunkSize
    for index in 0..<count {
      let start = index * chunkSize
      let end = min(size, start + chunkSize)
      var message = MultipartMessage(minimumCapacity: 3)
      if let envelope { message.append(envelope) }
      let chunk = Wire.Chunk(index: index, count: count, offset: start)
      message.append(Message(Wire.encodeHeader(frame, chunk: chunk, seq: seq)))
      var partStart = 0
      for part in frame.parts {
        let partEnd = partStart + part.count
        let low = max(start, partStart)
        let high = min(end, partEnd)
        if low < high {
          message.append(
            Self.message(
              part, UnsafeRawBufferPointer(rebasing: part.bytes[(low - partStart)..<(high - partStart)])))
        }
        partStart = partEnd
      }
      guard try deliver(&message) else { return false }
    }
    return true
  }

  /// A zero-copy message over `bytes`, which belong to `payload`.
  static func message(_ payload: Payload, _ bytes: UnsafeRawBufferPointer) -> Message {
    guard bytes.count > 0 else { return Message() }
    return Message(bytesNoCopy: UnsafeMutableRawBufferPointer(mutating: bytes)) {
      withExtendedLifetime(payload) {}
    }
  }
}

extension ForwardNode {
  static func chunkSize(_ node: Node) -> Int { Int(node["chunk_size"]?.bytes ?? 8 << 20) }
  static func peerTimeoutNanos(_ node: Node) -> UInt64 {
    UInt64((node["peer_timeout"]?.seconds ?? 10) * 1e9)
  }

  /// `pattern: pub` (PUB: every frame to every subscriber; ZeroMQ drops
  /// messages for subscribers that fall behind) and `push` with
  /// `acknowledge: false` (plain PUSH: each frame to one consumer, waiting when
  /// all are slow). Nothing is acknowledged, so nothing is confirmed to sources.
  struct SocketBody: StageBody {
    let publish: Bool
    let endpoint: ZMQEndpoint
    let messages: WireMessages
    let highWaterMark: Int32

    init(node: Node, publish: Bool) {
      self.publish = publish
      endpoint = ZMQEndpoint(node)
      messages = WireMessages(chunkSize: ForwardNode.chunkSize(node))
      // ZeroMQ counts messages, not bytes: keep its queue short and let the edge's
      // byte-bounded buffer hold the backlog. A message is at most one chunk, so
      // the queue holds at most about the edge's bytes too.
      let frames = node.inputs.map(\.qos.bufferFrames).min() ?? 64
      let bytes = node.inputs.map(\.qos.bufferBytes).min() ?? (256 << 20)
      let chunks = Int(bytes / UInt64(max(messages.chunkSize, 1)))
      highWaterMark = Int32(max(4, min(frames, chunks, 1000)))
    }

    mutating func run(_ context: StageContext) throws {
      let socket = try Socket(publish ? .pub : .push, context: SharedZMQ.context)
      try socket.setOption(.sendHighWaterMark, highWaterMark)
      try socket.setOption(.linger, 0)
      try endpoint.attach(socket)
      while let frame = context.receive() {
        let sent = try messages.forEach(frame) { message in
          while true {
            if try socket.trySend(&message) { return true }
            if publish { return true }  // a full subscriber loses the message
            if context.isAborted { return false }
            _ = try socket.poll(.writable, timeout: .milliseconds(200))
          }
        }
        guard sent else { break }
        context.counters.framesOut.add(1, ordering: .relaxed)
        context.counters.bytesOut.add(frame.byteCount, ordering: .relaxed)
      }
      // Drain: give queued messages time to reach consumers, unless aborted.
      if !context.isAborted { try? socket.setOption(.linger, 5000) }
      socket.close()
    }
  }
}

/// A consumer as a `push` or `request` forward knows it.
struct Peer {
  /// Frames it may hold unacknowledged (its `ready` credit).
  var window = 0
  /// The consumer's `ready` session, if it sent one.
  var session: String?
  /// Frames sent and not acknowledged, by sequence number.
  var unacked: [UInt64: Frame] = [:]
  var lastHeard: UInt64
  /// The id of the series start it was sent last.
  var seriesStart: UInt64?
  /// `request`: it asked for a frame and has not had one yet.
  var waiting = false
  /// `request`: the id of the last data frame it was sent.
  var lastServed: UInt64?

  var credit: Int { window - unacked.count }
}

/// The socket side shared by `push` and `request`: a ROUTER when the forward
/// listens (many consumers connect, each known by its routing id), a DEALER
/// when it connects to a consumer that listens (one peer, id empty).
struct PeerSocket: ~Copyable {
  let socket: Socket
  let router: Bool

  init(_ endpoint: ZMQEndpoint) throws {
    let router = endpoint.bind
    let socket = try Socket(router ? .router : .dealer, context: SharedZMQ.context)
    // Credit bounds what is queued per consumer, so ZeroMQ's own bound is not
    // needed (and ROUTER would silently drop at it).
    try socket.setOption(.sendHighWaterMark, 0)
    try socket.setOption(.linger, 0)
    if router {
      try socket.setOption(.routerMandatory, true)
    } else {
      // The consumer listens with a ROUTER: say hello on every (re)connection so
      // it answers `ready`.
      try socket.setOption(.probeRouter, true)
    }
    try endpoint.attach(socket)
    self.router = router
    self.socket = socket
  }

  /// The next consumer message, if one is queued: its peer id and control
  /// message; bad messages are reported and skipped.
  func tryReceive(_ context: StageContext) throws -> (id: [UInt8], control: Wire.Control)? {
    while var message = try socket.tryReceiveMultipart() {
      var id: [UInt8] = []
      if router {
        guard message.count >= 2 else { continue }
        id = message.removeFirst().bytes
      }
      // An empty message is a peer's connection probe: nothing to answer.
      if message.count == 1, message.withPart(at: 0, { $0.isEmpty }) { continue }
      guard message.count == 1 else {
        context.reportError("bad-control", "a consumer sent a message of \(message.count) parts; expected 1")
        continue
      }
      do {
        let control = try message.withPart(at: 0) { part in
          try part.withUnsafeBytes { try Wire.Control.decode($0) }
        }
        return (id, control)
      } catch let error as Wire.DecodeError {
        context.reportError(error.kind, "a consumer's message was rejected: \(error.description)")
      }
    }
    return nil
  }

  /// Sends `frame` to peer `id`; false when the peer is gone (ROUTER only).
  func send(_ frame: Frame, seq: UInt64?, to id: [UInt8], _ messages: WireMessages) throws -> Bool {
    do {
      return try messages.forEach(frame, seq: seq, envelope: router ? id : nil) { message in
        try socket.send(message.take())
        return true
      }
    } catch let error as ZMQError where error.code == EHOSTUNREACH {
      return false
    }
  }

  func wait(_ timeoutNanos: UInt64) throws {
    _ = try socket.poll(.readable, timeout: .nanoseconds(Int64(timeoutNanos)))
  }
}

extension MultipartMessage {
  /// Moves the parts out, leaving this message empty.
  fileprivate mutating func take() -> MultipartMessage {
    var taken = MultipartMessage(minimumCapacity: count)
    while !isEmpty { taken.append(removeFirst()) }
    return taken
  }
}

extension ForwardNode {
  /// `pattern: push`: each frame to one consumer that has credit, kept until
  /// that consumer acknowledges it (docs/wire.md, "Acknowledgements").
  ///
  /// Consumers say `ready` with a credit (how many frames they may hold
  /// unacknowledged); frames go round-robin to consumers with credit; an `ack`
  /// confirms frames to their sources (`Frame.confirm`) and returns credit. A
  /// consumer that says `bye`, is unreachable, or is silent for `peer_timeout`
  /// is forgotten and its unacknowledged frames are resent to the others first.
  /// The forward only takes from its input what it can hand out soon, so a
  /// slow or absent consumer back-pressures the input edge (guaranteed) or lets
  /// it drop (best-effort, latest) as the edge says.
  struct PushBody: StageBody {
    let endpoint: ZMQEndpoint
    let messages: WireMessages
    let peerTimeout: UInt64
    /// Whether every input is guaranteed: then the forward waits for every
    /// acknowledgement before it exits, however long (a second signal aborts).
    let guaranteed: Bool
    var peers: [[UInt8]: Peer] = [:]
    /// Peers in the order they arrived, for round-robin.
    var rotation: [[UInt8]] = []
    var nextPeer = 0
    /// Frames taken from the input (or to be resent) and not yet sent.
    var pending = Deque<Frame>()
    var openSeries: Frame?
    var nextSeq: UInt64 = 1
    var nextExpiryCheck: UInt64 = 0

    /// How many frames the forward takes ahead of its consumers' credit.
    static let lookahead = 16

    init(node: Node) {
      endpoint = ZMQEndpoint(node)
      messages = WireMessages(chunkSize: ForwardNode.chunkSize(node))
      peerTimeout = ForwardNode.peerTimeoutNanos(node)
      guaranteed = node.inputs.allSatisfy { $0.qos.delivery == .guaranteed }
    }

    var unackedCount: Int { peers.values.reduce(0) { $0 + $1.unacked.count } }

    mutating func run(_ context: StageContext) throws {
      let socket = try PeerSocket(endpoint)  // closed when run returns
      var inputOpen = true
      var drainDeadline: UInt64?
      while true {
        if context.isAborted {
          context.countAbandoned(pending.count + unackedCount)
          return
        }
        while let (id, control) = try socket.tryReceive(context) { handle(control, from: id, context) }
        let now = monotonicNanos()
        if now >= nextExpiryCheck { expirePeers(now: now, context) }
        try sendPending(socket, context)

        if !inputOpen {
          if pending.isEmpty && unackedCount == 0 { return }
          if !guaranteed {
            // A lossy input does not keep the run waiting for absent consumers.
            let deadline = drainDeadline ?? now + 5_000_000_000
            drainDeadline = deadline
            if now >= deadline {
              context.countAbandoned(pending.count + unackedCount)
              return
            }
          }
          try socket.wait(100_000_000)
          continue
        }
        if pending.count < Self.lookahead {
          // Nothing to send: wait on the input (consumers' messages can wait a
          // moment); something to send but no credit: only peek at the input.
          switch context.receive(waitingAtMost: pending.isEmpty ? .milliseconds(20) : .zero) {
          case .frame(let frame):
            pending.append(frame)
            continue
          case .ended: inputOpen = false
          case .nothingYet: break
          }
        }
        if !pending.isEmpty { try socket.wait(50_000_000) }
      }
    }

    mutating func handle(_ control: Wire.Control, from id: [UInt8], _ context: StageContext) {
      let now = monotonicNanos()
      switch control {
      case .ready(let credit, let session):
        if let known = peers[id]?.session, let session, known != session {
          forget(id, context, reason: "restarted")
        }
        if peers[id] == nil {
          peers[id] = Peer(lastHeard: now)
          rotation.append(id)
        }
        peers[id]?.window = credit
        peers[id]?.session = session
        peers[id]?.lastHeard = now
      case .heartbeat:
        peers[id]?.lastHeard = now
      case .ack(let seqs, let failed):
        guard peers[id] != nil else { return }  // forgotten: its frames went to others
        peers[id]?.lastHeard = now
        for seq in seqs {
          if let frame = peers[id]?.unacked.removeValue(forKey: seq) {
            frame.confirm()
            context.counters.framesOut.add(1, ordering: .relaxed)
            context.counters.bytesOut.add(frame.byteCount, ordering: .relaxed)
          }
        }
        for seq in failed {
          if let frame = peers[id]?.unacked.removeValue(forKey: seq) {
            // Not confirmed: its source keeps the original.
            context.reportError(
              "consumer-failed", "a consumer could not take '\(frame.meta.name)' (frame \(frame.meta.id))")
          }
        }
      case .bye:
        forget(id, context, reason: "said bye")
      case .next:
        context.reportError("bad-control", "'next' is for 'pattern: request'; this forward pushes")
      }
    }

    /// Forgets consumers silent for `peerTimeout`.
    mutating func expirePeers(now: UInt64, _ context: StageContext) {
      nextExpiryCheck = now + min(peerTimeout / 4, 250_000_000)
      for (id, peer) in peers where now > peer.lastHeard + peerTimeout {
        forget(id, context, reason: "was silent for \(peerTimeout / 1_000_000) ms")
      }
    }

    /// Forgets a consumer; what it did not acknowledge is sent again first.
    mutating func forget(_ id: [UInt8], _ context: StageContext, reason: String) {
      guard let peer = peers.removeValue(forKey: id) else { return }
      rotation.removeAll { $0 == id }
      if !peer.unacked.isEmpty {
        Log.info(
          "\(context.node.name): a consumer \(reason); resending its \(peer.unacked.count) unacknowledged frame(s)"
        )
        pending.insert(contentsOf: peer.unacked.sorted { $0.key < $1.key }.map(\.value), at: 0)
      }
    }

    /// Hands out pending frames while some consumer has credit. Control
    /// frames go to every consumer at once; a consumer that arrives later gets
    /// the open series' start before its first frame.
    mutating func sendPending(_ socket: borrowing PeerSocket, _ context: StageContext) throws {
      // Each frame leaves `pending` before it is sent: forgetting a consumer
      // puts that consumer's frames back at the front meanwhile.
      while let frame = pending.first {
        switch frame.kind {
        case .seriesStart, .seriesEnd:
          pending.removeFirst()
          openSeries = frame.kind == .seriesStart ? frame : nil
          for id in rotation {
            if frame.kind == .seriesEnd && peers[id]?.seriesStart == nil { continue }
            if try socket.send(frame, seq: nil, to: id, messages) {
              peers[id]?.seriesStart = frame.kind == .seriesStart ? frame.meta.id : nil
            } else {
              forget(id, context, reason: "is unreachable")
            }
          }
        case .data:
          guard let id = nextPeerWithCredit() else { return }
          pending.removeFirst()
          var reached = true
          if let openSeries, peers[id]?.seriesStart != openSeries.meta.id {
            reached = try socket.send(openSeries, seq: nil, to: id, messages)
            if reached { peers[id]?.seriesStart = openSeries.meta.id }
          }
          let seq = nextSeq
          if reached {
            nextSeq += 1
            reached = try socket.send(frame, seq: seq, to: id, messages)
          }
          guard reached else {
            pending.prepend(frame)
            forget(id, context, reason: "is unreachable")
            continue
          }
          peers[id]?.unacked[seq] = frame
        }
      }
    }

    mutating func nextPeerWithCredit() -> [UInt8]? {
      guard !rotation.isEmpty else { return nil }
      for step in 0..<rotation.count {
        let index = (nextPeer + step) % rotation.count
        if let peer = peers[rotation[index]], peer.credit > 0 {
          nextPeer = index + 1
          return rotation[index]
        }
      }
      return nil
    }
  }

  /// `pattern: request`: a consumer asks (`next`) and gets the newest frame
  /// it has not had, at once if there is one, else as soon as one arrives. The
  /// forward keeps taking its input so what it serves stays fresh; frames no
  /// one asked for in time are skipped. Nothing is confirmed to sources.
  struct RequestBody: StageBody {
    let endpoint: ZMQEndpoint
    let messages: WireMessages
    let peerTimeout: UInt64
    var peers: [[UInt8]: Peer] = [:]
    var newest: Frame?
    var openSeries: Frame?
    var nextSeq: UInt64 = 1
    var nextExpiryCheck: UInt64 = 0

    init(node: Node) {
      endpoint = ZMQEndpoint(node)
      messages = WireMessages(chunkSize: ForwardNode.chunkSize(node))
      peerTimeout = ForwardNode.peerTimeoutNanos(node)
    }

    mutating func run(_ context: StageContext) throws {
      let socket = try PeerSocket(endpoint)  // closed when run returns
      while !context.isAborted {
        while let (id, control) = try socket.tryReceive(context) {
          let now = monotonicNanos()
          switch control {
          case .next:
            peers[id, default: Peer(lastHeard: now)].waiting = true
            peers[id]?.lastHeard = now
          case .ready, .heartbeat, .ack:
            peers[id, default: Peer(lastHeard: now)].lastHeard = now
          case .bye:
            peers[id] = nil
          }
        }
        let now = monotonicNanos()
        if now >= nextExpiryCheck {
          nextExpiryCheck = now + 250_000_000
          peers = peers.filter { now <= $0.value.lastHeard + peerTimeout }
        }
        try serve(socket, context)
        switch context.receive(waitingAtMost: .milliseconds(5)) {
        case .frame(let frame):
          switch frame.kind {
          case .data: newest = frame
          case .seriesStart, .seriesEnd:
            openSeries = frame.kind == .seriesStart ? frame : nil
            // Every consumer that has the series hears where it starts and ends.
            for (id, peer) in peers where frame.kind == .seriesStart || peer.seriesStart != nil {
              if try socket.send(frame, seq: nil, to: id, messages) {
                peers[id]?.seriesStart = frame.kind == .seriesStart ? frame.meta.id : nil
              } else {
                peers[id] = nil
              }
            }
          }
        case .ended: return
        case .nothingYet: break
        }
      }
    }

    mutating func serve(_ socket: borrowing PeerSocket, _ context: StageContext) throws {
      guard let newest else { return }
      for (id, peer) in peers where peer.waiting && peer.lastServed != newest.meta.id {
        if let openSeries, peer.seriesStart != openSeries.meta.id {
          guard try socket.send(openSeries, seq: nil, to: id, messages) else {
            peers[id] = nil
            continue
          }
          peers[id]?.seriesStart = openSeries.meta.id
        }
        let seq = nextSeq
        nextSeq += 1
        guard try socket.send(newest, seq: seq, to: id, messages) else {
          peers[id] = nil
          continue
        }
        peers[id]?.waiting = false
        peers[id]?.lastServed = newest.meta.id
        context.counters.framesOut.add(1, ordering: .relaxed)
        context.counters.bytesOut.add(newest.byteCount, ordering: .relaxed)
      }
    }
  }
}
