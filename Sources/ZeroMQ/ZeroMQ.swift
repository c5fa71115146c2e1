import CZeroMQ

/// Library-wide facts about the libzmq in use, and polling.
///
/// The rest of the module is ``ZMQContext`` (one per process, shared by all threads), ``Socket``
/// (owned by one thread at a time), ``Message`` and ``MultipartMessage`` (owned values that can move
/// between threads, with zero-copy sharing of large payloads), and ``ZMQError``.
public enum ZMQ {
  /// A libzmq version number.
  public struct Version: Comparable, CustomStringConvertible, Hashable, Sendable {
    public var major: Int
    public var minor: Int
    public var patch: Int

    public init(major: Int, minor: Int, patch: Int) {
      self.major = major
      self.minor = minor
      self.patch = patch
    }

    public static func < (lhs: Version, rhs: Version) -> Bool {
      (lhs.major, lhs.minor, lhs.patch) < (rhs.major, rhs.minor, rhs.patch)
    }

    /// `"major.minor.patch"`.
    public var description: String { "\(major).\(minor).\(patch)" }
  }

  /// The version of the libzmq linked at run time (`zmq_version`), not the headers compiled against.
  public static var version: Version {
    var major: Int32 = 0
    var minor: Int32 = 0
    var patch: Int32 = 0
    zmq_version(&major, &minor, &patch)
    return Version(major: Int(major), minor: Int(minor), patch: Int(patch))
  }

  /// Whether libzmq was built with `capability` (`zmq_has`): `"curve"`, `"ipc"`, `"gssapi"`, ...
  public static func has(_ capability: String) -> Bool {
    zmq_has(capability) != 0
  }
}
