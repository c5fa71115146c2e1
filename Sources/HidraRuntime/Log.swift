#if canImport(Glibc)
  import Glibc
#endif

/// Minimal stderr logging, one line per call, written with one `write` so lines
/// from several threads do not interleave.
public enum Log {
  public static func info(_ message: String) { write("hidra: " + message) }
  public static func warning(_ message: String) { write("hidra: warning: " + message) }
  public static func error(_ message: String) { write("hidra: error: " + message) }

  public static func write(_ line: String) {
    var text = line
    if !text.hasSuffix("\n") { text += "\n" }
    text.withUTF8 { buffer in
      var offset = 0
      while offset < buffer.count {
        let written = Glibc.write(2, buffer.baseAddress! + offset, buffer.count - offset)
        if written <= 0 { break }
        offset += written
      }
    }
  }
}
