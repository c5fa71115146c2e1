import CZeroMQ

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// A CURVE key pair in Z85 text (40 characters each), for encrypted and authenticated TCP connections.
///
/// The server publishes its ``publicKey``; clients configure it with
/// ``Socket/setCurveClient(serverKey:keyPair:)``. Keep ``secretKey`` secret: ``description`` does not
/// print it.
public struct CurveKeyPair: CustomStringConvertible, Hashable, Sendable {
  /// The public key, 40 characters of Z85.
  public let publicKey: String
  /// The secret key, 40 characters of Z85.
  public let secretKey: String

  /// Wraps an existing key pair, e.g. read from a key file.
  public init(publicKey: String, secretKey: String) {
    self.publicKey = publicKey
    self.secretKey = secretKey
  }

  /// Generates a new random key pair (`zmq_curve_keypair`).
  ///
  /// - Throws: ``ZMQError/notSupported`` if libzmq was built without CURVE (see `ZMQ.has("curve")`).
  public static func generate() throws(ZMQError) -> CurveKeyPair {
    var publicKey = [CChar](repeating: 0, count: 41)
    var secretKey = [CChar](repeating: 0, count: 41)
    guard zmq_curve_keypair(&publicKey, &secretKey) == 0 else { throw .last("zmq_curve_keypair") }
    return CurveKeyPair(
      publicKey: string(fromNULTerminated: publicKey), secretKey: string(fromNULTerminated: secretKey))
  }

  /// Derives the public key that belongs to a Z85 secret key (`zmq_curve_public`).
  ///
  /// - Throws: ``ZMQError/notSupported`` without CURVE support, ``ZMQError/invalidArgument`` for a
  ///   malformed key.
  public static func publicKey(forSecretKey secretKey: String) throws(ZMQError) -> String {
    var publicKey = [CChar](repeating: 0, count: 41)
    guard secretKey.utf8.count == 40, zmq_curve_public(&publicKey, secretKey) == 0 else {
      let code = secretKey.utf8.count == 40 ? zmq_errno() : EINVAL
      throw ZMQError(code: code, operation: "zmq_curve_public")
    }
    return string(fromNULTerminated: publicKey)
  }

  /// `"CurveKeyPair(public: <publicKey>)"`.
  public var description: String {
    "CurveKeyPair(public: \(publicKey))"
  }

  private static func string(fromNULTerminated characters: [CChar]) -> String {
    String(decoding: characters.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }
}
