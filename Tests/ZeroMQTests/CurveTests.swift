import Testing
import ZeroMQ

/// CURVE needs a libzmq built with libsodium or its tweetnacl copy; Debian's is. The suite is skipped,
/// with that reason, where `zmq_has("curve")` is false.
@Suite("CURVE", .enabled(if: ZMQ.has("curve"), "libzmq was built without CURVE support"))
struct CurveTests {
  @Test func keyPairGeneration() throws {
    let pair = try CurveKeyPair.generate()
    #expect(pair.publicKey.utf8.count == 40)
    #expect(pair.secretKey.utf8.count == 40)
    #expect(try CurveKeyPair.publicKey(forSecretKey: pair.secretKey) == pair.publicKey)
    #expect(!pair.description.contains(pair.secretKey))
    #expect(try CurveKeyPair.generate() != pair)
    #expect(throws: ZMQError.invalidArgument) { try CurveKeyPair.publicKey(forSecretKey: "short") }
  }

  @Test func encryptedExchangeWithTheRightServerKey() throws {
    let context = try makeContext()
    let serverKeys = try CurveKeyPair.generate()
    let server = try Socket(.pull, context: context)
    try server.setCurveServer(keyPair: serverKeys)
    #expect(try server.option(.curveServer))
    try server.bind("tcp://127.0.0.1:*")
    try server.setOption(.receiveTimeout, 2000)

    let clientKeys = try CurveKeyPair.generate()
    let client = try Socket(.push, context: context)
    try client.setCurveClient(serverKey: serverKeys.publicKey, keyPair: clientKeys)
    #expect(try client.option(.curveServerKey) == serverKeys.publicKey)
    #expect(try client.option(.curvePublicKey) == clientKeys.publicKey)
    try client.connect(try server.lastEndpoint())

    try client.send("secret frame")
    #expect(try server.receive().string == "secret frame")
  }

  @Test func wrongServerKeyGetsNothingThrough() throws {
    let context = try makeContext()
    let serverKeys = try CurveKeyPair.generate()
    let server = try Socket(.pull, context: context)
    try server.setCurveServer(keyPair: serverKeys)
    try server.bind("tcp://127.0.0.1:*")
    try server.setOption(.receiveTimeout, 300)

    let client = try Socket(.push, context: context)
    let impostor = try CurveKeyPair.generate()
    try client.setCurveClient(serverKey: impostor.publicKey, keyPair: try CurveKeyPair.generate())
    try client.setOption(.linger, 0)
    try client.connect(try server.lastEndpoint())

    try client.send("must not arrive")
    #expect(throws: ZMQError.wouldBlock) { _ = try server.receive() }
  }
}
