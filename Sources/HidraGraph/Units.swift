/// Parsing of the quantities a graph is written in: byte sizes, durations and rates.
///
/// Every parser returns nil for text it does not accept; the caller reports the
/// error with the expected form taken from `Units.*Form`.
public enum Units {
  public static let sizeForm = "a size such as 4096, 64KiB, 16MiB, 2GiB or 1.5GB"
  public static let durationForm = "a duration such as 500ms, 10s, 5min or 2h"
  public static let rateForm = "a rate such as 10/s, 600/min, 2.5/s or 1kHz"

  private static let sizeUnits: [String: Double] = [
    "": 1, "b": 1,
    "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
    "kib": 1024, "mib": 1_048_576, "gib": 1_073_741_824, "tib": 1_099_511_627_776,
  ]

  /// Bytes from `4096`, `64KiB`, `16 MiB`, `1.5GB` (SI and binary units).
  public static func parseSize(_ text: String) -> UInt64? {
    guard let (number, unit) = split(text), let factor = sizeUnits[unit.lowercased()] else { return nil }
    let bytes = number * factor
    guard bytes >= 0, bytes < 1.8e19, bytes == bytes.rounded(.down) || factor > 1 else { return nil }
    return UInt64(bytes.rounded())
  }

  private static let durationUnits: [String: Double] = [
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600,
  ]

  /// Seconds from `500ms`, `10s`, `5min`, `2h`. A bare number is rejected: say the unit.
  public static func parseDuration(_ text: String) -> Double? {
    guard let (number, unit) = split(text), !unit.isEmpty, let factor = durationUnits[unit] else {
      return nil
    }
    return number * factor
  }

  /// Events per second from `10/s`, `600/min`, `2/h`, `2.5/s`, `100Hz`, `1kHz`.
  public static func parseRate(_ text: String) -> Double? {
    let trimmed = text.trimmingSpaces
    if let slash = trimmed.firstIndex(of: "/") {
      guard let count = Double(trimmed[..<slash].trimmingSpaces), count >= 0 else { return nil }
      switch trimmed[trimmed.index(after: slash)...].trimmingSpaces {
      case "s", "sec": return count
      case "min", "m": return count / 60
      case "h": return count / 3600
      default: return nil
      }
    }
    guard let (number, unit) = split(trimmed) else { return nil }
    switch unit {
    case "Hz": return number
    case "kHz": return number * 1e3
    case "MHz": return number * 1e6
    default: return nil
    }
  }

  /// Splits `"16 MiB"` into (16, "MiB"). The number must be finite and not negative.
  private static func split(_ text: String) -> (Double, String)? {
    let trimmed = text.trimmingSpaces
    guard let end = trimmed.firstIndex(where: { !($0.isNumber || $0 == ".") }) else {
      guard let value = Double(trimmed), value.isFinite, value >= 0 else { return nil }
      return (value, "")
    }
    guard let value = Double(trimmed[..<end]), value.isFinite, value >= 0 else { return nil }
    return (value, String(trimmed[end...]).trimmingSpaces)
  }

  /// `67108864` -> `64MiB`; exact binary units when they fit, bytes otherwise.
  public static func formatSize(_ bytes: UInt64) -> String {
    for (unit, factor) in [("TiB", UInt64(1) << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
    where bytes >= factor && bytes % factor == 0 {
      return "\(bytes / factor)\(unit)"
    }
    return "\(bytes)B"
  }

  public static func formatDuration(_ seconds: Double) -> String {
    if seconds >= 3600, seconds.truncatingRemainder(dividingBy: 3600) == 0 {
      return "\(Int(seconds / 3600))h"
    }
    if seconds >= 60, seconds.truncatingRemainder(dividingBy: 60) == 0 { return "\(Int(seconds / 60))min" }
    if seconds >= 1 { return "\(trim(seconds))s" }
    return "\(trim(seconds * 1000))ms"
  }

  public static func formatRate(_ perSecond: Double) -> String { "\(trim(perSecond))/s" }

  static func trim(_ value: Double) -> String {
    value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
  }
}

extension StringProtocol {
  var trimmingSpaces: String {
    var s = Substring(self)
    while s.first?.isWhitespace == true { s.removeFirst() }
    while s.last?.isWhitespace == true { s.removeLast() }
    return String(s)
  }
}
