import HidraGraph
import HidraRuntime

/// `forward` with `format: simplon-monitor`: serves the EIGER SIMPLON monitor
/// interface (`/monitor/api/<api_version>/...`) so OnDA Monitor, and other
/// monitor clients, read frames from Hidra as from the detector.
///
/// The stage's thread takes frames from the input edge and puts each image (its
/// payload untouched, still compressed) into a bounded `MonitorBuffer`; it never
/// waits for the server. The HTTP server runs on its own event loops and only
/// reads and takes from that buffer; decompression and the TIFF are made on a
/// thread pool when a client asks for an image, so an image nobody asks for
/// costs nothing. When the input ends the server stops, after the requests
/// being answered are done.
enum SimplonMonitor {
  struct Body: StageBody {
    let host: String
    let port: Int
    let version: String
    let bufferSize: Int
    let bufferBytes: Int

    init(node: Node) throws {
      let address = node["listen"]?.string ?? ""
      guard case .success(let endpoint) = Endpoint.parse(address, schemes: ["http"], role: .listen),
        let port = endpoint.port
      else {
        throw NodeSetupError("simplon-monitor needs 'listen: http://HOST:PORT', got '\(address)'")
      }
      host = endpoint.host
      self.port = port
      version = node["api_version"]?.string ?? "1.8.0"
      bufferSize = min(max(1, node["buffer_size"]?.integer ?? 4), MonitorBuffer.maxSize)
      bufferBytes = Int(clamping: node["buffer_bytes"]?.bytes ?? 1 << 30)
    }

    mutating func run(_ context: StageContext) throws {
      let buffer = MonitorBuffer(size: bufferSize, maxBytes: bufferBytes)
      let errors = MonitorErrors(node: context.node.name, counters: context.counters)
      let server = try MonitorServer(
        host: host, port: port, buffer: buffer, version: version, errors: errors, counters: context.counters)
      var info: MonitorImage.SeriesInfo?
      while let frame = context.receive() {
        switch frame.kind {
        case .seriesStart: info = MonitorImage.SeriesInfo(start: frame)
        case .seriesEnd: continue
        case .data:
          do {
            buffer.put(try MonitorImage(frame, series: info))
          } catch {
            context.reportError(error.kind, error.message)
            buffer.noteError(error.message)
          }
        }
      }
      server.stop(drainSeconds: context.isAborted ? 0 : 5)
    }
  }
}
