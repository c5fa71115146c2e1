import Foundation
import Testing
import ZeroMQ

@Suite("Messages")
struct MessageTests {
  @Test func initializers() {
    #expect(Message().count == 0)
    #expect(Message().count == 0 && Message().isEmpty)
    #expect(Message().hasMore == false)
    #expect(Message([1, 2, 3]).bytes == [1, 2, 3])
    #expect(Message("héllo").bytes == Array("héllo".utf8))
    #expect(Message("héllo").string == "héllo")
    // A collection without contiguous storage takes the fallback copy.
    #expect(Message(UInt8(0)..<UInt8(200)).bytes == Array(0..<200))
    #expect(Message(pattern(50)[10..<20]).bytes == Array(pattern(50)[10..<20]))

    var filled = Message(uninitializedCount: 4096)
    filled.withUnsafeMutableBytes { buffer in
      for index in buffer.indices { buffer[index] = UInt8(truncatingIfNeeded: index * 31) }
    }
    #expect(filled.count == 4096)
    #expect(filled.bytes == pattern(4096))
  }

  @Test func shareOfLargeMessageIsZeroCopy() {
    let original = Message(pattern(1 << 20))
    let shared = original.share()
    let originalAddress = original.withUnsafeBytes { $0.baseAddress }
    let sharedAddress = shared.withUnsafeBytes { $0.baseAddress }
    #expect(originalAddress != nil)
    #expect(originalAddress == sharedAddress)
    #expect(shared.count == 1 << 20)

    // Small messages are stored inline and copied; the content is the same.
    let small = Message("tiny")
    let smallShare = small.share()
    #expect(smallShare.string == "tiny")
    #expect(small.withUnsafeBytes { $0.baseAddress } != smallShare.withUnsafeBytes { $0.baseAddress })
  }

  @Test func zeroCopyMessageIsReleasedOnceAfterReceiverClosesIt() throws {
    let size = 1 << 20
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 64)
    defer { buffer.deallocate() }
    buffer.copyBytes(from: pattern(size))
    let counter = ReleaseCounter()

    let context = try makeContext()
    let pull = try Socket(.pull, context: context)
    try pull.bind("inproc://zerocopy")
    try pull.setOption(.receiveTimeout, 2000)
    let push = try Socket(.push, context: context)
    try push.connect("inproc://zerocopy")

    let message = Message(bytesNoCopy: buffer, release: { counter.release() })
    let extra = message.share()
    try push.send(message)
    #expect(counter.count == 0)
    do {
      let received = try pull.receive()
      // inproc hands over the sender's buffer itself.
      #expect(received.withUnsafeBytes { $0.baseAddress } == UnsafeRawPointer(buffer.baseAddress))
      #expect(received.bytes == pattern(size))
    }
    // The share still refers to the buffer.
    #expect(counter.count == 0)
    #expect(extra.withUnsafeBytes { $0.baseAddress } == UnsafeRawPointer(buffer.baseAddress))
    extra.close()
    #expect(counter.wait(timeout: 2))
    Thread.sleep(forTimeInterval: 0.02)
    #expect(counter.count == 1)
  }

  @Test func zeroCopyMessageSentOverTCPIsReleasedOnce() throws {
    let size = 1 << 20
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 64)
    defer { buffer.deallocate() }
    buffer.copyBytes(from: pattern(size, seed: 3))
    let counter = ReleaseCounter()

    let context = try makeContext()
    let pull = try Socket(.pull, context: context)
    try pull.bind("tcp://127.0.0.1:*")
    try pull.setOption(.receiveTimeout, 2000)
    let push = try Socket(.push, context: context)
    try push.connect(try pull.lastEndpoint())

    try push.send(Message(bytesNoCopy: buffer, release: { counter.release() }))
    #expect(try pull.receive().bytes == pattern(size, seed: 3))
    // The I/O thread releases the buffer once it has written it to the connection.
    #expect(counter.wait(timeout: 2))
    Thread.sleep(forTimeInterval: 0.02)
    #expect(counter.count == 1)
  }

  @Test func zeroCopyMessageThatIsNeverSentIsReleasedOnClose() {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 8)
    defer { buffer.deallocate() }
    let counter = ReleaseCounter()
    do {
      let message = Message(bytesNoCopy: buffer, release: { counter.release() })
      #expect(message.count == 16)
    }
    #expect(counter.wait(timeout: 1))
    #expect(counter.count == 1)
  }

  @Test func messageMovesToAnotherThread() throws {
    let handoff = Handoff(Message(pattern(1000)))
    let worker = TestThread { handoff.take().bytes }
    #expect(try worker.join() == pattern(1000))
  }

  @Test func multipartContainer() {
    var parts = MultipartMessage(minimumCapacity: 1)
    #expect(parts.isEmpty == true)
    for index in 0..<10 { parts.append("part \(index)") }  // grows past its capacity
    parts.append([0xFF])
    parts.append(Message(pattern(100)))
    #expect(parts.count == 12)
    #expect(parts.withPart(at: 3) { $0.string } == "part 3")
    #expect(parts.byteCount == 10 * 6 + 1 + 100)

    let first = parts.removeFirst()
    #expect(first.string == "part 0")
    let removed = parts.remove(at: 9)
    #expect(removed.bytes == [0xFF])
    #expect(parts.count == 10)
    #expect(parts.withPart(at: 0) { $0.string } == "part 1")
    #expect(parts.withPart(at: 9) { $0.bytes } == pattern(100))

    let shared = parts.share()
    #expect(shared.count == 10)
    let sameBuffer =
      parts.withPart(at: 9) { $0.withUnsafeBytes { $0.baseAddress } }
      == shared.withPart(at: 9) { $0.withUnsafeBytes { $0.baseAddress } }
    #expect(sameBuffer)

    parts.removeAll()
    #expect(parts.isEmpty == true)
    #expect(shared.withPart(at: 9) { $0.bytes } == pattern(100))
  }

  @Test func emptyMultipartCannotBeSent() throws {
    let context = try makeContext()
    let push = try Socket(.push, context: context)
    #expect(throws: ZMQError.invalidArgument) { try push.send(MultipartMessage()) }
    var empty = MultipartMessage()
    #expect(throws: ZMQError.invalidArgument) { try push.trySend(&empty) }
  }
}
