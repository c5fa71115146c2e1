import Foundation
import HidraGraph
import HidraRuntime
import ZeroMQ

#if canImport(Glibc)
  import Glibc
#endif

/// The HiDRA 4.x Transfer API (docs/hidra-compat.md): what the `hidra-transfer`
/// forward (the server side) and the `hidra` source (the client side) share.
enum HidraTransfer {
  /// The HiDRA version the forward reports, and the source sends by default.
  static let version = "4.4.3"
  /// HiDRA's fixed ports: signals, then query requests on the next port.
  static let defaultSignalPort = 50000
  /// HiDRA's default chunk size.
  static let defaultChunkSize = 10 << 20
  /// How long a Transfer API client waits for a signal's reply.
  static let replyTimeout: Duration = .seconds(1)

  /// The major version as HiDRA compares it: `version.rsplit('.', 2)[0]`, as text.
  static func majorVersion(_ version: String) -> String {
    let parts = version.split(separator: ".", omittingEmptySubsequences: false)
    return parts.count <= 3 ? String(parts[0]) : parts.dropLast(2).joined(separator: ".")
  }

  /// Epoch seconds as HiDRA sends them (a float), from nanoseconds: whole
  /// seconds and the fraction apart, so `…001_250_000_000` gives `…1.25`.
  static func seconds(nanos: UInt64) -> Double {
    Double(nanos / 1_000_000_000) + Double(nanos % 1_000_000_000) / 1e9
  }

  /// The four ways a client can register.
  enum Mode: String, CaseIterable, Sendable {
    case stream = "STREAM"
    case streamMetadata = "STREAM_METADATA"
    case queryNext = "QUERY_NEXT"
    case queryNextMetadata = "QUERY_NEXT_METADATA"

    /// Files are sent only when asked (NEXT).
    var isQuery: Bool { self == .queryNext || self == .queryNextMetadata }
    /// One metadata message per file instead of the file's bytes.
    var isMetadata: Bool { self == .streamMetadata || self == .queryNextMetadata }
  }

  /// A signal (the third frame of a signal request).
  enum Signal: Equatable, Sendable {
    case getVersion
    case start(Mode)
    case stop(Mode)
    case forceStop(Mode)

    init?(_ text: String) {
      if text == "GET_VERSION" {
        self = .getVersion
        return
      }
      for (prefix, make) in [
        ("START_", Signal.start), ("STOP_", Signal.stop), ("FORCE_STOP_", Signal.forceStop),
      ]
      where text.hasPrefix(prefix) {
        guard let mode = Mode(rawValue: String(text.dropFirst(prefix.count))) else { return nil }
        self = make(mode)
        return
      }
      return nil
    }

    /// The mode of a STOP or FORCE_STOP, and whether it is forced; nil for others.
    var stopping: (mode: Mode, force: Bool)? {
      switch self {
      case .stop(let mode): return (mode, false)
      case .forceStop(let mode): return (mode, true)
      case .getVersion, .start: return nil
      }
    }

    var text: String {
      switch self {
      case .getVersion: return "GET_VERSION"
      case .start(let mode): return "START_" + mode.rawValue
      case .stop(let mode): return "STOP_" + mode.rawValue
      case .forceStop(let mode): return "FORCE_STOP_" + mode.rawValue
      }
    }
  }

  /// One entry of a signal's target list: `["host:port", priority, "regex"]`.
  struct TargetSpec: Equatable, Sendable {
    var host: String
    var port: Int
    var priority: Int
    /// A Python `re.match` pattern for the bare file name (a suffix list is turned into one).
    var pattern: String
  }

  /// Splits `host:port`: exactly one `:` and a port in 1...65535; nil otherwise.
  static func splitAddress(_ address: String) -> (host: String, port: Int)? {
    let pieces = address.split(separator: ":", omittingEmptySubsequences: false)
    guard pieces.count == 2, !pieces[0].isEmpty, pieces[1].allSatisfy(\.isASCII),
      let port = Int(pieces[1]), (1...65535).contains(port)
    else { return nil }
    return (String(pieces[0]), port)
  }

  /// Parses a target list. Priority may be an integer or a string of one; the
  /// third element is a pattern, or (old clients) a list of file name suffixes.
  /// Nil for anything else.
  static func parseTargets(_ text: String) -> [TargetSpec]? {
    guard let data = text.data(using: .utf8),
      let list = (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) as? [Any]
    else { return nil }
    var targets: [TargetSpec] = []
    for item in list {
      guard let entry = item as? [Any], entry.count == 3, let address = entry[0] as? String,
        let (host, port) = splitAddress(address)
      else { return nil }
      let priority: Int
      if let number = jsonInteger(entry[1]) {
        priority = number
      } else if let text = entry[1] as? String, let number = Int(text.trimmingCharacters(in: .whitespaces)) {
        priority = number
      } else {
        return nil
      }
      guard priority >= 0 else { return nil }
      let pattern: String
      if let text = entry[2] as? String {
        pattern = text
      } else if let suffixes = entry[2] as? [Any], case let texts = suffixes.compactMap({ $0 as? String }),
        texts.count == suffixes.count
      {
        pattern = texts.isEmpty || texts == [""] ? ".*" : ".*(" + texts.joined(separator: "|") + ")$"
      } else {
        return nil
      }
      targets.append(TargetSpec(host: host, port: port, priority: priority, pattern: pattern))
    }
    return targets
  }

  /// The addresses of a target list, for STOP: only `["host:port", ...]` is read.
  static func parseAddresses(_ text: String) -> [(host: String, port: Int)]? {
    guard let data = text.data(using: .utf8),
      let list = (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) as? [Any]
    else { return nil }
    var addresses: [(host: String, port: Int)] = []
    for item in list {
      guard let entry = item as? [Any], let address = entry.first as? String,
        let split = splitAddress(address)
      else { return nil }
      addresses.append(split)
    }
    return addresses
  }

  /// A JSON integer and nothing else (Foundation on Linux also casts booleans
  /// and whole floating-point numbers to `Int`).
  static func jsonInteger(_ value: Any?) -> Int? {
    guard let number = value as? NSNumber else { return nil }
    switch String(cString: number.objCType) {
    case "c", "d", "f", "B": return nil
    default: return value as? Int
    }
  }

  /// A JSON number (integer or floating point, not a boolean).
  static func jsonNumber(_ value: Any?) -> Double? {
    guard let number = value as? NSNumber else { return nil }
    switch String(cString: number.objCType) {
    case "c", "B": return nil
    default: return number.doubleValue
    }
  }

  /// Python's `re.match(pattern, name)`: anchored at the start of the name only.
  static func matches(_ regex: Regex<AnyRegexOutput>, _ name: String) -> Bool {
    name.prefixMatch(of: regex) != nil
  }

  /// Splits a frame name into HiDRA's `relative_path` and `filename`, dropping
  /// leading `/` and `.` components; nil for names HiDRA clients must not get
  /// (`..`, a NUL, no file name).
  static func splitName(_ name: String) -> (relativePath: String, filename: String)? {
    guard !name.contains("\0"), !name.hasSuffix("/") else { return nil }
    let components = name.split(separator: "/").filter { $0 != "." }
    guard let last = components.last, !components.contains("..") else { return nil }
    return (components.dropLast().joined(separator: "/"), String(last))
  }

  /// What HiDRA says about one file, in every data message and in metadata messages.
  struct FileMetadata: Sendable {
    var sourcePath: String
    var relativePath: String
    var filename: String
    var filesize: Int
    var modTime: Double
    var createTime: Double
    var chunkSize: Int

    /// The metadata part: JSON with HiDRA's keys; `chunk_number` only for data
    /// messages (a metadata message must not have it).
    func json(chunk: Int?) -> [UInt8] {
      var text = "{\"source_path\":\(quote(sourcePath)),\"relative_path\":\(quote(relativePath))"
      text += ",\"filename\":\(quote(filename)),\"version\":\(quote(HidraTransfer.version))"
      text += ",\"filesize\":\(filesize),\"file_mod_time\":\(number(modTime))"
      text += ",\"file_create_time\":\(number(createTime)),\"chunksize\":\(chunkSize)"
      if let chunk { text += ",\"chunk_number\":\(chunk)" }
      text += ",\"confirmation_required\":false}"
      return Array(text.utf8)
    }

    private func quote(_ text: String) -> String { Rendering.quote(text) }

    private func number(_ value: Double) -> String { value.isFinite ? "\(value)" : "0.0" }
  }

  /// Sends one signal on a fresh REQ connection, as the Transfer API does, and
  /// waits up to `timeout` for the reply; nil when none came (or it was not text).
  static func signal(
    _ frames: [String], to endpoint: String, context: ZMQContext, timeout: Duration = replyTimeout
  ) throws -> [String]? {
    let socket = try Socket(.req, context: context)
    try socket.setOption(.linger, 0)
    try socket.setOption(.maxMessageSize, 1 << 20)
    try socket.connect(endpoint)
    var message = MultipartMessage(minimumCapacity: frames.count)
    for frame in frames { message.append(frame) }
    try socket.send(message)
    guard try socket.poll(.readable, timeout: timeout).contains(.readable),
      var reply = try socket.tryReceiveMultipart()
    else { return nil }
    var texts: [String] = []
    while !reply.isEmpty {
      let part = reply.removeFirst()
      guard let text = part.withUnsafeBytes({ String(validating: $0, as: UTF8.self) }) else { return nil }
      texts.append(text)
    }
    return texts
  }
}

/// Host name resolution with a cache (results, and failures, are kept for a
/// minute), so answering a signal never waits for DNS twice for one name.
final class HostResolver {
  private var cache: [String: (addresses: [String], expires: UInt64)] = [:]
  static let lifetimeNanos: UInt64 = 60_000_000_000

  /// The numeric addresses of `host`, IPv4 first; empty when it does not resolve.
  func addresses(of host: String) -> [String] {
    let name = host.lowercased()
    let now = monotonicNanos()
    if let cached = cache[name], cached.expires > now { return cached.addresses }
    let addresses = Self.lookup(name)
    if cache.count > 4096 { cache.removeAll() }
    cache[name] = (addresses, now + Self.lifetimeNanos)
    return addresses
  }

  /// One canonical key for a target address, `IPv4:port`, or nil when the host
  /// has no IPv4 address (HiDRA's `host:port` has room for no IPv6 literal).
  func key(host: String, port: Int) -> String? {
    guard let address = addresses(of: host).first(where: { !$0.contains(":") }) else { return nil }
    return "\(address):\(port)"
  }

  private static func lookup(_ host: String) -> [String] {
    let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var result: UnsafeMutablePointer<addrinfo>?
    guard getaddrinfo(bare, nil, &hints, &result) == 0, let first = result else { return [] }
    defer { freeaddrinfo(first) }
    var v4: [String] = []
    var v6: [String] = []
    var cursor: UnsafeMutablePointer<addrinfo>? = first
    while let info = cursor {
      var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
      if getnameinfo(
        info.pointee.ai_addr, info.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0,
        NI_NUMERICHOST) == 0
      {
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if info.pointee.ai_family == AF_INET {
          if !v4.contains(text) { v4.append(text) }
        } else if !v6.contains(text) {
          v6.append(text)
        }
      }
      cursor = info.pointee.ai_next
    }
    return v4 + v6
  }
}
