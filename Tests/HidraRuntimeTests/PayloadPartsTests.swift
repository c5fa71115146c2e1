import HidraRuntime
import Testing

/// `PayloadParts` behaves like `[Payload]` whether it holds one part inline or an array.
@Suite struct PayloadPartsTests {
  static func payloads(_ count: Int) -> [Payload] {
    (0..<count).map { index in Payload(copying: [UInt8(index)]) }
  }

  static func identities(_ parts: PayloadParts) -> [ObjectIdentifier] { parts.map(ObjectIdentifier.init) }

  @Test func holdsWhatItWasGiven() {
    let three = Self.payloads(3)
    for count in 0...3 {
      let parts = PayloadParts(Array(three.prefix(count)))
      #expect(parts.count == count)
      #expect(parts.isEmpty == (count == 0))
      #expect(Self.identities(parts) == three.prefix(count).map(ObjectIdentifier.init))
    }
    let literal: PayloadParts = [three[1]]
    #expect(literal.count == 1 && literal[0] === three[1] && literal.first === three[1])
    #expect(PayloadParts(three[2]).map(\.count) == [1])
  }

  @Test func growsAndShrinksInOrder() {
    let five = Self.payloads(5)
    var parts = PayloadParts()
    for payload in five.prefix(3) { parts.append(payload) }
    #expect(Self.identities(parts) == five.prefix(3).map(ObjectIdentifier.init))
    parts += five.suffix(2)
    #expect(Self.identities(parts) == five.map(ObjectIdentifier.init))
    parts.replaceSubrange(1..<4, with: [five[4]])
    #expect(Self.identities(parts) == [five[0], five[4], five[4]].map(ObjectIdentifier.init))
    parts.removeLast(2)
    #expect(Self.identities(parts) == [ObjectIdentifier(five[0])])
    parts.removeAll()
    #expect(parts.isEmpty)
    parts.append(five[3])
    #expect(parts.count == 1 && parts[0] === five[3])
  }

  @Test func aFrameCountsItsBytesOverEveryPart() {
    var frame = Frame(kind: .data, meta: FrameMeta(), parts: PayloadParts(Payload(copying: [1, 2, 3])))
    #expect(frame.byteCount == 3)
    frame.parts.append(Payload(copying: [4, 5]))
    #expect(frame.byteCount == 5)
    frame.parts = []
    #expect(frame.byteCount == 0)
  }
}
