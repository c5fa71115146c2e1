/// A parsed network address: `tcp://host:port`, `ipc:///path`, `inproc://name`,
/// `http://host:port/path`.
public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
  public var scheme: String
  /// Host for tcp/http (`*` is any interface when listening); empty otherwise.
  public var host: String
  /// Port for tcp/http; nil for ipc/inproc, or `*` (any free port) when listening.
  public var port: Int?
  /// Path for ipc/inproc (the socket file or name) and http (the URL path, may be empty).
  public var path: String

  public init(scheme: String, host: String, port: Int?, path: String) {
    self.scheme = scheme
    self.host = host
    self.port = port
    self.path = path
  }

  public var description: String {
    switch scheme {
    case "tcp", "http", "https":
      let shownHost = host.contains(":") ? "[\(host)]" : host
      return "\(scheme)://\(shownHost):\(port.map(String.init) ?? "*")\(path)"
    default: return "\(scheme)://\(path)"
    }
  }

  /// True when a listener on this endpoint accepts connections on every interface.
  public var isWildcardHost: Bool { ["*", "0.0.0.0", "::", ""].contains(host) }

  /// Parses `text`; on failure returns the reason (and the offset in `text` it applies to).
  public static func parse(
    _ text: String, schemes: [String], role: EndpointRole
  ) -> Result<Endpoint, EndpointError> {
    guard let separator = text.firstRange(of: "://") else {
      return .failure(
        EndpointError(offset: 0, message: "'\(text)' is not an endpoint: expected SCHEME://ADDRESS"))
    }
    let scheme = String(text[..<separator.lowerBound])
    let rest = String(text[separator.upperBound...])
    let restOffset = scheme.count + 3
    guard schemes.contains(scheme) else {
      let allowed = schemes.map { "\($0)://" }.joined(separator: ", ")
      return .failure(
        EndpointError(offset: 0, message: "scheme '\(scheme)://' is not allowed here; use \(allowed)"))
    }
    switch scheme {
    case "ipc", "inproc":
      guard !rest.isEmpty, !rest.contains("\0") else {
        return .failure(EndpointError(offset: restOffset, message: "\(scheme):// needs a path or name"))
      }
      return .success(Endpoint(scheme: scheme, host: "", port: nil, path: rest))
    default:
      return parseHostPort(scheme: scheme, rest: rest, restOffset: restOffset, role: role)
    }
  }

  private static func parseHostPort(
    scheme: String, rest: String, restOffset: Int, role: EndpointRole
  ) -> Result<Endpoint, EndpointError> {
    var authority = Substring(rest)
    var path = ""
    if let slash = authority.firstIndex(of: "/") {
      guard scheme != "tcp" else {
        return .failure(
          EndpointError(
            offset: restOffset + rest.distance(from: rest.startIndex, to: slash),
            message: "a tcp:// endpoint has no path; expected tcp://HOST:PORT"))
      }
      path = String(authority[slash...])
      authority = authority[..<slash]
    }
    var host: Substring
    var portText: Substring?
    if authority.hasPrefix("[") {
      guard let close = authority.firstIndex(of: "]") else {
        return .failure(EndpointError(offset: restOffset, message: "unclosed '[' in IPv6 address"))
      }
      host = authority[authority.index(after: authority.startIndex)..<close]
      let after = authority[authority.index(after: close)...]
      if after.hasPrefix(":") {
        portText = after.dropFirst()
      } else if !after.isEmpty {
        return .failure(EndpointError(offset: restOffset, message: "expected ':PORT' after the IPv6 address"))
      }
    } else if let colon = authority.lastIndex(of: ":") {
      host = authority[..<colon]
      portText = authority[authority.index(after: colon)...]
    } else {
      host = authority
    }
    let portOffset =
      restOffset + (portText.map { rest.distance(from: rest.startIndex, to: $0.startIndex) } ?? 0)
    guard !host.isEmpty else {
      return .failure(
        EndpointError(offset: restOffset, message: "\(scheme):// needs a host, such as 127.0.0.1 or *"))
    }
    if host == "*" && role == .connect {
      return .failure(
        EndpointError(offset: restOffset, message: "cannot connect to '*'; name the host to connect to"))
    }
    let hostCharacters = host.unicodeScalars.allSatisfy {
      ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0)
        || [".", "-", "_", ":", "*", "%"].contains($0)
    }
    guard hostCharacters else {
      return .failure(
        EndpointError(offset: restOffset, message: "'\(host)' is not a valid host name or address"))
    }
    var port: Int?
    switch portText {
    case nil:
      if scheme == "http" {
        port = 80
      } else if scheme == "https" {
        port = 443
      } else {
        return .failure(
          EndpointError(
            offset: restOffset + authority.unicodeScalars.count,
            message: "\(scheme):// needs a port: \(scheme)://HOST:PORT"))
      }
    case "*"? where role == .listen && scheme == "tcp":
      port = nil
    case let text?:
      guard let number = Int(text), (1...65535).contains(number) else {
        return .failure(
          EndpointError(offset: portOffset, message: "port '\(text)' is not a number from 1 to 65535"))
      }
      port = number
    }
    return .success(Endpoint(scheme: scheme, host: String(host), port: port, path: path))
  }

  /// True when two listeners on one host would fight over the same address.
  public func conflicts(with other: Endpoint) -> Bool {
    switch (scheme, other.scheme) {
    case ("ipc", "ipc"), ("inproc", "inproc"): return path == other.path
    case ("tcp", "tcp"), ("tcp", "http"), ("http", "tcp"), ("http", "http"), ("https", _), (_, "https"):
      guard let port, let otherPort = other.port, port == otherPort else { return false }
      return host == other.host || isWildcardHost || other.isWildcardHost
    default: return false
    }
  }
}

/// Why an endpoint was not accepted, and where in its text.
public struct EndpointError: Error, Sendable {
  public var offset: Int
  public var message: String
}
