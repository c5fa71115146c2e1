import CZeroMQ

/// The ZeroMQ socket types (`ZMQ_PAIR` ... `ZMQ_XSUB`); the raw value is libzmq's constant.
public enum SocketType: Int32, CaseIterable, CustomStringConvertible, Sendable {
  /// Exclusive pair, one peer each way (`ZMQ_PAIR`).
  case pair = 0
  /// Publisher: sends to all matching subscribers, drops when a subscriber is full (`ZMQ_PUB`).
  case pub = 1
  /// Subscriber: receives what it subscribed to (`Socket.subscribe(_:)`) (`ZMQ_SUB`).
  case sub = 2
  /// Request: strictly alternates send and receive (`ZMQ_REQ`).
  case req = 3
  /// Reply: strictly alternates receive and send (`ZMQ_REP`).
  case rep = 4
  /// Asynchronous request, round-robin out, fair-queued in (`ZMQ_DEALER`).
  case dealer = 5
  /// Asynchronous reply, addressed by routing id (`ZMQ_ROUTER`).
  case router = 6
  /// Pipeline sink: fair-queues from all pushers (`ZMQ_PULL`).
  case pull = 7
  /// Pipeline source: round-robins to pullers, blocks when all are full (`ZMQ_PUSH`).
  case push = 8
  /// Publisher that also receives subscription messages (`ZMQ_XPUB`).
  case xpub = 9
  /// Subscriber that sends subscriptions as messages (`ZMQ_XSUB`).
  case xsub = 10

  /// libzmq's name, e.g. `"PUSH"`.
  public var description: String {
    switch self {
    case .pair: "PAIR"
    case .pub: "PUB"
    case .sub: "SUB"
    case .req: "REQ"
    case .rep: "REP"
    case .dealer: "DEALER"
    case .router: "ROUTER"
    case .pull: "PULL"
    case .push: "PUSH"
    case .xpub: "XPUB"
    case .xsub: "XSUB"
    }
  }
}
