import CZeroMQ
import Foundation
import Testing
import ZeroMQ

@Suite("Sockets")
struct SocketTests {
  @Test func versionIsReported() {
    let version = ZMQ.version
    #expect(version.major >= 4)
    #expect(version.description == "\(version.major).\(version.minor).\(version.patch)")
  }

  @Test func socketTypesMatchLibzmqConstants() {
    let expected: [SocketType: Int32] = [
      .pair: ZMQ_PAIR, .pub: ZMQ_PUB, .sub: ZMQ_SUB, .req: ZMQ_REQ, .rep: ZMQ_REP, .dealer: ZMQ_DEALER,
      .router: ZMQ_ROUTER, .pull: ZMQ_PULL, .push: ZMQ_PUSH, .xpub: ZMQ_XPUB, .xsub: ZMQ_XSUB,
    ]
    #expect(expected.count == SocketType.allCases.count)
    for type in SocketType.allCases { #expect(type.rawValue == expected[type], "\(type)") }
  }

  @Test func pushPullSingleParts() throws {
    let context = try makeContext()
    let pull = try Socket(.pull, context: context)
    try pull.bind("inproc://single")
    let push = try Socket(.push, context: context)
    try push.connect("inproc://single")
    try pull.setOption(.receiveTimeout, 2000)

    try push.send(Message(pattern(1000)))
    try push.send([1, 2, 3])
    try push.send("hello")
    try push.send(Message())

    let first = try pull.receive()
    #expect(first.bytes == pattern(1000))
    #expect(first.hasMore == false)
    #expect(try pull.receive().bytes == [1, 2, 3])
    let third = try pull.receive()
    #expect(third.string == "hello")
    #expect(third.count == 5)
    let fourth = try pull.receive()
    #expect(fourth.isEmpty == true)
  }

  @Test func pushPullMultipartOverTCP() throws {
    let context = try makeContext()
    let pull = try Socket(.pull, context: context)
    try pull.bind("tcp://127.0.0.1:*")
    let endpoint = try pull.lastEndpoint()
    #expect(endpoint.hasPrefix("tcp://127.0.0.1:"))
    #expect(!endpoint.hasSuffix("*"))
    try pull.setOption(.receiveTimeout, 2000)
    let push = try Socket(.push, context: context)
    try push.connect(endpoint)

    var out = MultipartMessage()
    out.append("header")
    out.append(Message())
    out.append(pattern(100_000, seed: 7))
    try push.send(out)

    let received = try pull.receiveMultipart()
    #expect(received.count == 3)
    #expect(received.withPart(at: 0) { $0.string } == "header")
    #expect(received.withPart(at: 1) { $0.isEmpty })
    #expect(received.withPart(at: 2) { $0.bytes } == pattern(100_000, seed: 7))
    #expect(received.byteCount == 6 + 100_000)

    // Part by part: `hasMore` is set on all parts but the last.
    try push.send("a", more: true)
    try push.send("b", more: true)
    try push.send("c")
    let a = try pull.receive()
    let b = try pull.receive()
    let c = try pull.receive()
    #expect([a.hasMore, b.hasMore, c.hasMore] == [true, true, false])
    #expect([a.string, b.string, c.string] == ["a", "b", "c"])
    #expect(try pull.option(.receiveMore) == false)
  }

  @Test func publishSubscribeFiltersByPrefix() throws {
    let context = try makeContext()
    let pub = try Socket(.pub, context: context)
    try pub.bind("inproc://pubsub")
    let sub = try Socket(.sub, context: context)
    try sub.subscribe("a.")
    try sub.connect("inproc://pubsub")
    try sub.setOption(.receiveTimeout, 2000)

    // Subscriptions travel asynchronously: publish until the subscriber sees something.
    var synchronized = false
    for _ in 0..<200 where !synchronized {
      try pub.send("a.sync")
      synchronized = try sub.poll(.readable, timeout: .milliseconds(10)).contains(.readable)
    }
    try #require(synchronized)

    for text in ["b.1", "a.1", "b.2", "a.2", "a.end"] { try pub.send(text) }
    var received: [String] = []
    while true {
      let text = try sub.receive().string
      if text == "a.end" { break }
      if text != "a.sync" { received.append(text) }
    }
    #expect(received == ["a.1", "a.2"])

    try sub.unsubscribe("a.")
    try sub.subscribe([UInt8]("b.".utf8))
  }

  @Test func requestReplyWithServerOnItsOwnThread() throws {
    let context = try makeContext()
    let rep = try Socket(.rep, context: context)
    try rep.bind("tcp://127.0.0.1:*")
    let endpoint = try rep.lastEndpoint()
    try rep.setOption(.receiveTimeout, 2000)

    let handoff = Handoff(rep)  // the server socket moves to the server thread
    let server = TestThread { () throws -> Int in
      let socket = handoff.take()
      var served = 0
      for _ in 0..<3 {
        let request = try socket.receive()
        try socket.send("re: " + request.string)
        served += 1
      }
      return served
    }

    let req = try Socket(.req, context: context)
    try req.setOption(.receiveTimeout, 2000)
    try req.connect(endpoint)
    for index in 0..<3 {
      try req.send("q\(index)")
      #expect(try req.receive().string == "re: q\(index)")
    }
    #expect(try server.join() == 3)

    // REQ must alternate: a second receive without a send is a state error.
    #expect(throws: ZMQError.invalidState) { _ = try req.receive() }
  }

  @Test func nonBlockingReceiveReturnsNilWhenEmpty() throws {
    let context = try makeContext()
    let pull = try Socket(.pull, context: context)
    try pull.bind("inproc://empty")
    #expect(try pull.tryReceive() == nil)
    #expect(try pull.tryReceiveMultipart() == nil)

    let push = try Socket(.push, context: context)
    try push.connect("inproc://empty")
    try push.send("x", more: true)
    try push.send("y")
    guard let message = try pull.tryReceiveMultipart() else {
      Issue.record("no multipart message queued")
      return
    }
    #expect(message.count == 2)
    #expect(try pull.tryReceive() == nil)
  }

  @Test func nonBlockingSendReportsWouldBlockAtHighWaterMark() throws {
    let context = try makeContext()
    let pull = try Socket(.pull, context: context)
    try pull.setOption(.receiveHighWaterMark, 1)
    try pull.bind("inproc://hwm")
    let push = try Socket(.push, context: context)
    try push.setOption(.sendHighWaterMark, 1)
    try push.connect("inproc://hwm")

    var accepted = 0
    var message = Message(pattern(64))
    while try push.trySend(&message) {
      accepted += 1
      message = Message(pattern(64))
      try #require(accepted < 100, "HWM never reached")
    }
    #expect(accepted >= 1)
    // The refused message is still ours, unchanged.
    #expect(message.bytes == pattern(64))

    var parts = MultipartMessage()
    parts.append("p1")
    parts.append("p2")
    #expect(try push.trySend(&parts) == false)
    #expect(parts.count == 2)
    #expect(try push.trySend([9, 9]) == false)

    // The consumer drains what was queued.
    var drained = 0
    while try pull.tryReceive() != nil { drained += 1 }
    #expect(drained == accepted)
  }

  @Test func sendWithoutPeerWouldBlock() throws {
    let context = try makeContext()
    let push = try Socket(.push, context: context)
    try push.bind("inproc://nobody")
    var message = Message("x")
    #expect(try push.trySend(&message) == false)
    try push.setOption(.sendTimeout, 20)
    #expect(throws: ZMQError.wouldBlock) { try push.send("x") }
  }

  @Test func pollReportsReadiness() throws {
    let context = try makeContext()
    let pull = try Socket(.pull, context: context)
    try pull.bind("inproc://poll")
    let push = try Socket(.push, context: context)
    try push.connect("inproc://poll")

    #expect(try pull.poll(.readable, timeout: .zero).isEmpty)
    #expect(try push.poll(.writable, timeout: .milliseconds(100)) == .writable)
    let start = ContinuousClock.now
    #expect(try ZMQ.poll(pull, .readable, timeout: .milliseconds(30)).isEmpty)
    #expect(ContinuousClock.now - start >= .milliseconds(25))

    try push.send("ping")
    let (pullReady, pushReady) = try ZMQ.poll(
      pull, .readable, push, .writable, timeout: .seconds(1))
    #expect(pullReady == .readable)
    #expect(pushReady == .writable)
    #expect(try pull.events().contains(.readable))
    #expect(try pull.fileDescriptor() >= 0)
    _ = try pull.receive()
    #expect(try !pull.events().contains(.readable))
  }

  @Test func pollOverThreeSockets() throws {
    let context = try makeContext()
    let a = try Socket(.pull, context: context)
    try a.bind("inproc://a")
    let b = try Socket(.pull, context: context)
    try b.bind("inproc://b")
    let push = try Socket(.push, context: context)
    try push.connect("inproc://b")
    try push.send("to b")
    let ready = try ZMQ.poll(a, .readable, b, .readable, push, .readable, timeout: .seconds(1))
    #expect(ready.0.isEmpty)
    #expect(ready.1 == .readable)
    #expect(ready.2.isEmpty)
  }

  @Test func badEndpointsReportErrnoAndMessage() throws {
    let context = try makeContext()
    let socket = try Socket(.push, context: context)
    let error = #expect(throws: ZMQError.self) { try socket.connect("bogus://x") }
    #expect(error == .protocolNotSupported)
    #expect(error?.code == EPROTONOSUPPORT)
    #expect(error?.message == String(cString: strerror(EPROTONOSUPPORT)))
    #expect(error?.description.hasPrefix("connect(bogus://x): ") == true)

    #expect(throws: ZMQError.invalidArgument) { try socket.bind("tcp://127.0.0.1:notaport") }
    #expect(throws: ZMQError.noSuchEndpoint) { try socket.disconnect("inproc://never-connected") }
    try socket.bind("inproc://taken")
    let other = try Socket(.pull, context: context)
    #expect(throws: ZMQError.addressInUse) { try other.bind("inproc://taken") }
    try socket.unbind("inproc://taken")
    try other.bind("inproc://taken")
  }

  @Test func receiveTimeoutThrowsWouldBlock() throws {
    let context = try makeContext()
    let pull = try Socket(.pull, context: context)
    try pull.bind("inproc://timeout")
    try pull.setOption(.receiveTimeout, 50)
    let start = ContinuousClock.now
    #expect(throws: ZMQError.wouldBlock) { _ = try pull.receive() }
    #expect(throws: ZMQError.wouldBlock) { _ = try pull.receiveMultipart() }
    let elapsed = ContinuousClock.now - start
    #expect(elapsed >= .milliseconds(90))
    #expect(elapsed < .seconds(2))
  }

  @Test func optionsRoundTrip() throws {
    let context = try makeContext()
    let socket = try Socket(.dealer, context: context)
    try socket.setOption(.sendHighWaterMark, 7)
    try socket.setOption(.receiveHighWaterMark, 8)
    try socket.setOption(.linger, 25)
    try socket.setOption(.receiveTimeout, 100)
    try socket.setOption(.sendTimeout, 200)
    try socket.setOption(.conflate, true)
    try socket.setOption(.immediate, true)
    try socket.setOption(.maxMessageSize, 1 << 40)
    try socket.setOption(.tcpKeepalive, 1)
    try socket.setOption(.tcpKeepaliveIdle, 30)
    try socket.setOption(.routingID, [1, 2, 3])
    #expect(try socket.option(.sendHighWaterMark) == 7)
    #expect(try socket.option(.receiveHighWaterMark) == 8)
    #expect(try socket.option(.linger) == 25)
    #expect(try socket.option(.receiveTimeout) == 100)
    #expect(try socket.option(.sendTimeout) == 200)
    #expect(try socket.option(.conflate) == true)
    #expect(try socket.option(.immediate) == true)
    #expect(try socket.option(.maxMessageSize) == 1 << 40)
    #expect(try socket.option(.tcpKeepalive) == 1)
    #expect(try socket.option(.tcpKeepaliveIdle) == 30)
    #expect(try socket.option(.routingID) == [1, 2, 3])
    #expect(socket.type == .dealer)
    try socket.bind("inproc://options")
    #expect(try socket.lastEndpoint() == "inproc://options")
    #expect(throws: ZMQError.invalidArgument) { try socket.setOption(.sendHighWaterMark, -5) }
  }

  @Test func maxMessageSizeRejectsLargeMessagesFromNetworkPeers() throws {
    let context = try makeContext()
    let pull = try Socket(.pull, context: context)
    try pull.setOption(.maxMessageSize, 100)
    try pull.bind("tcp://127.0.0.1:*")
    let push = try Socket(.push, context: context)
    try push.connect(try pull.lastEndpoint())
    try push.send(pattern(1000))
    #expect(try pull.poll(.readable, timeout: .milliseconds(300)).isEmpty)
    #expect(try pull.tryReceive() == nil)
  }

  @Test func contextShutdownUnblocksReceiversAndStopsSocketCreation() throws {
    let context = try makeContext()
    let pull = try Socket(.pull, context: context)
    try pull.bind("inproc://shutdown")
    let handoff = Handoff(pull)
    let started = DispatchSemaphore(value: 0)
    let receiver = TestThread { () -> ZMQError? in
      let socket = handoff.take()
      started.signal()
      do {
        _ = try socket.receive()
        return nil
      } catch let error as ZMQError {
        return error  // the socket is closed when this closure returns
      }
    }
    #expect(started.wait(timeout: .now() + 2) == .success)
    Thread.sleep(forTimeInterval: 0.05)  // let it block in receive
    context.shutdown()
    #expect(context.isShutDown)
    let outcome = try receiver.join()
    #expect(outcome == .some(.some(ZMQError.terminated)))
    #expect(throws: ZMQError.terminated) { _ = try Socket(.push, context: context) }

    // Every socket is closed, so terminate() returns promptly (bounded, in case it does not).
    let terminator = TestThread { context.terminate() }
    #expect(try terminator.join() != nil)
    context.terminate()  // idempotent
  }
}
