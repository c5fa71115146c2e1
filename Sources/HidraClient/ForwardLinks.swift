import HidraRuntime
import ZeroMQ

/// The consumer's side of the acknowledgement protocol (docs/wire.md,
/// "Acknowledgements"), shared by `HidraReceiver` and Hidra's `zmq` source: the
/// forwards a consumer talks to, one reassembly per forward (so chunked frames
/// of several forwards never mix), and control messages back to them.
///
/// On a ROUTER (the consumer listens) every message starts with the forward's
/// routing id; on a DEALER (it connects) there is one forward, with id `[]`.
public struct ForwardLinks {
  public let router: Bool
  /// The forwards heard from (ROUTER), or the one forward (DEALER).
  public private(set) var forwards: Set<[UInt8]>
  private var assemblers: [[UInt8]: WireAssembler] = [:]
  private let makeAssembler: () -> WireAssembler

  public init(router: Bool, makeAssembler: @escaping () -> WireAssembler) {
    self.router = router
    self.makeAssembler = makeAssembler
    forwards = router ? [] : [[]]
  }

  /// A frame that arrived complete, the forward it came from, and the `seq` to
  /// acknowledge it by (nil when the forward expects no acknowledgement).
  public struct Arrival {
    public var forward: [UInt8]
    public var frame: Frame
    public var seq: UInt64?
  }

  /// Handles one received message: the frame it completes, or nil. A forward
  /// heard from for the first time is sent `greeting` (if any); a connection
  /// probe (an empty message) is answered by that alone.
  public mutating func accept(
    _ message: inout MultipartMessage, greeting: Wire.Control?, on socket: borrowing Socket
  ) -> Arrival? {
    var id: [UInt8] = []
    if router {
      guard message.count >= 2 else { return nil }
      id = message.removeFirst().bytes
      if forwards.insert(id).inserted, let greeting { send(greeting, to: id, on: socket) }
      if message.count == 1, message.withPart(at: 0, { $0.isEmpty }) { return nil }
    }
    var assembler = assemblers.removeValue(forKey: id) ?? makeAssembler()
    let frame = assembler.accept(&message)
    let seq = assembler.lastSeq
    assemblers[id] = assembler
    return frame.map { Arrival(forward: id, frame: $0, seq: seq) }
  }

  /// Sends a control message without waiting (a full queue skips it: the next
  /// keep-alive follows); a forward ZeroMQ reports gone is forgotten.
  public mutating func send(_ control: Wire.Control, to id: [UInt8], on socket: borrowing Socket) {
    var message = MultipartMessage(minimumCapacity: 2)
    if router { message.append(id) }
    message.append(control.encoded())
    do {
      _ = try socket.trySend(&message)
    } catch {
      forwards.remove(id)  // EHOSTUNREACH: it disconnected
      assemblers[id] = nil
    }
  }

  /// Sends `control` to every forward.
  public mutating func sendToAll(_ control: Wire.Control, on socket: borrowing Socket) {
    for id in forwards { send(control, to: id, on: socket) }
  }

  /// Acknowledges settled frames, one message per forward.
  public mutating func acknowledge(
    _ settled: [(forward: [UInt8], seq: UInt64, confirmed: Bool)], on socket: borrowing Socket
  ) {
    var byForward: [[UInt8]: (seqs: [UInt64], failed: [UInt64])] = [:]
    for item in settled {
      if item.confirmed {
        byForward[item.forward, default: ([], [])].seqs.append(item.seq)
      } else {
        byForward[item.forward, default: ([], [])].failed.append(item.seq)
      }
    }
    for (id, lists) in byForward { send(.ack(seqs: lists.seqs, failed: lists.failed), to: id, on: socket) }
  }

  /// Gives up the frames still being reassembled (counted as `incomplete`).
  public mutating func finish() {
    for key in Array(assemblers.keys) { assemblers[key]?.finish() }
  }
}
