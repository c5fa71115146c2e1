import AsyncHTTPClient
import Foundation
import HidraGraph
import HidraRuntime
import NIOCore

/// `eiger-filewriter`: files the EIGER's file writer offers over HTTP.
public enum EigerFileWriterSource {
  public static let spec = NodeTypeSpec(
    name: "eiger-filewriter", kind: .source,
    summary: "HDF5 files pulled from an EIGER's SIMPLON file writer over HTTP",
    details: """
      Polls `GET /filewriter/api/<api_version>/files` (a JSON list of names, bare or as a SIMPLON \
      parameter `{"value": [...]}`) every `poll`, and downloads each new file whose name matches \
      `include` from `GET /data/<name>`, streaming the body: a file becomes one data frame of series 1 \
      named by its name on the detector (so a store can mirror it), with attributes `size` and \
      `last_modified` (when the detector sends it); files larger than `chunk_size` travel as payload \
      parts of that size, as the directory source sends them. The series starts (attribute `url`) \
      when the source starts and ends when it stops. Each file is sent once: a file still listed is \
      never downloaded again; one that disappeared from the list and came back is sent again if its \
      size or modification time changed (asked with `HEAD`). Failures (connection refused, HTTP \
      errors, a list that is not JSON, a body shorter than its `Content-Length`) are counted and \
      logged, and the file is tried again at the next poll; a name that is not a safe relative path \
      (`..`, an absolute or empty component) is counted once and skipped.

      With `delete: true` each file is removed from the detector (`DELETE /data/<name>`) only after \
      every guaranteed sink downstream has confirmed it (a store once the file is durable); a file \
      that a sink failed to take is kept on the detector and counted (`unconfirmed`). On stop the \
      source ends the series, then waits for the confirmations of the files it sent (a second \
      Ctrl-C gives up waiting and keeps those files on the detector).
      """,
    options: [
      OptionSpec(
        "url", .endpoint(schemes: ["http"], role: .connect), required: true,
        doc: "The detector's address, e.g. `http://dcu.example:80`."),
      OptionSpec("api_version", .string, default: "1.8.0", doc: "SIMPLON API version."),
      OptionSpec("poll", .duration, default: "1s", doc: "How often to list the detector's files."),
      OptionSpec("include", .list(.glob), doc: "Only files whose name matches one of these globs."),
      OptionSpec(
        "delete", .boolean, default: "false",
        doc: "Delete each file on the detector once every guaranteed sink confirmed it."),
      OptionSpec(
        "chunk_size", .size(min: 4096), default: "8MiB",
        doc: "Files larger than this travel in chunks of this size."),
    ],
    example: """
      filewriter:
        type: eiger-filewriter
        url: http://dcu.example:80
        include: ["*_master.h5", "*_data_*.h5"]
        delete: true
      """,
    touchesPayload: true,
    cleansUp: { node in node["delete"]?.boolean == true ? "delete" : nil },
    // Files wait on the detector's disk until downloaded.
    canWait: true)
}

extension EigerFileWriterSource {
  /// The running source (see `docs/graph-reference.md`, `eiger-filewriter`).
  ///
  /// Everything runs on the stage thread: it lists, downloads and deletes
  /// through `StageHTTP` (waiting for each answer in short slices, so a stop is
  /// noticed), and takes the sinks' verdicts from `settled`, which the ledgers
  /// of the frames it sent fill from whatever thread settles them.
  struct Body: StageBody {
    let base: String
    let apiVersion: String
    let pollNanos: UInt64
    let include: [Glob]
    let delete: Bool
    let chunkSize: Int

    /// What is known of a file the source has sent.
    struct Known {
      var size: Int
      var modified: String?
      /// In the last listing.
      var listed: Bool
      /// Deleted on the detector by this source.
      var deleted = false
    }

    /// A ledger's verdict on one sent file.
    struct Verdict: Sendable {
      var name: String
      var size: Int
      var confirmed: Bool
    }

    var known: [String: Known] = [:]
    /// Names rejected as unsafe (counted once each).
    var rejected: Set<String> = []
    /// Confirmed files still to delete (retried at each poll when a DELETE fails).
    var toDelete: [String] = []
    /// Sent files whose ledger has not settled yet.
    var outstanding = 0
    let verdicts = Mailbox<Verdict>()
    var id: UInt64 = 0
    var index = 0
    var http: StageHTTP?

    init(node: Node) {
      base = StageHTTP.base(node["url"]?.string ?? "")
      apiVersion = node["api_version"]?.string ?? "1.8.0"
      pollNanos = UInt64(max(0.01, node["poll"]?.seconds ?? 1) * 1e9)
      include = (node["include"]?.list ?? []).compactMap { $0.string.flatMap { try? Glob.parse($0).get() } }
      delete = node["delete"]?.boolean ?? false
      chunkSize = Int(clamping: node["chunk_size"]?.bytes ?? 8 << 20)
    }

    var listURL: String { "\(base)/filewriter/api/\(apiVersion)/files" }

    mutating func run(_ context: StageContext) throws {
      let http = StageHTTP(connectTimeout: .seconds(2))
      self.http = http
      defer { http.shutdown() }
      id += 1
      guard context.emit(.seriesStart(1, id: id, attributes: ["url": base])) else { return }
      var nextPoll = monotonicNanos()
      while !context.isStopping {
        settle(verdicts.take(), context)
        if monotonicNanos() >= nextPoll {
          guard poll(context) else { return }
          deletePending(context)
          nextPoll = monotonicNanos() + pollNanos
        }
        let now = monotonicNanos()
        let wait = nextPoll > now ? min(Double(nextPoll - now) / 1e9, 0.1) : 0
        settle(verdicts.take(waiting: wait), context)
        if !toDelete.isEmpty { deletePending(context) }
      }
      id += 1
      guard context.emit(.seriesEnd(1, id: id, frames: index)) else { return }
      // Drain: wait for the sinks' verdicts on what was sent, and act on them.
      if outstanding > 0 {
        Log.info("\(context.node.name): waiting for sinks to confirm \(outstanding) files")
      }
      while outstanding > 0, !context.isAborted {
        settle(verdicts.take(waiting: 0.1), context)
      }
      deletePending(context)
      if outstanding > 0 {
        Log.warning(
          "\(context.node.name): \(outstanding) files were not confirmed before the run ended; kept on the detector"
        )
      }
      if !toDelete.isEmpty {
        Log.warning(
          "\(context.node.name): \(toDelete.count) confirmed files could not be deleted on the detector")
      }
    }

    /// Records the sinks' verdicts; confirmed files are queued for deletion.
    mutating func settle(_ items: [Verdict], _ context: StageContext) {
      for verdict in items {
        outstanding -= 1
        if !verdict.confirmed {
          context.reportError(
            "unconfirmed",
            "'\(verdict.name)' was not confirmed by every guaranteed sink; kept on the detector")
        } else if known[verdict.name]?.size == verdict.size, known[verdict.name]?.deleted == false {
          toDelete.append(verdict.name)
        }
      }
    }

    /// Deletes the confirmed files on the detector; failures stay queued.
    mutating func deletePending(_ context: StageContext) {
      guard let http, !toDelete.isEmpty else { return }
      var failed: [String] = []
      for name in toDelete {
        if context.isAborted {
          failed.append(name)
          continue
        }
        let result = http.fetch(
          StageHTTP.url(base, "data/" + name), method: .DELETE, maxBody: 4096, timeout: .seconds(10),
          cancelWhen: { context.isAborted })
        switch result {
        case .success(let response)
        where (200..<300).contains(response.status.code) || response.status == .notFound:
          // 404: already gone, which is what was asked.
          known[name]?.deleted = true
        case .success(let response):
          context.reportError(
            "delete", "cannot delete '\(name)' on the detector: \(StageHTTP.describe(response))")
          failed.append(name)
        case .failure(let error):
          context.reportError("delete", "cannot delete '\(name)' on the detector: \(error)")
          failed.append(name)
        }
      }
      toDelete = failed
    }

    /// Lists the detector's files and sends the new ones. False when the run is over.
    mutating func poll(_ context: StageContext) -> Bool {
      guard let http else { return true }
      let names: [String]
      switch http.fetch(listURL, timeout: .seconds(10), cancelWhen: { context.isStopping }) {
      case .failure(let error):
        if !context.isStopping { context.reportError("list", "cannot list files at \(listURL): \(error)") }
        return true
      case .success(let response) where response.status != .ok:
        context.reportError("list", "cannot list files at \(listURL): \(StageHTTP.describe(response))")
        return true
      case .success(let response):
        guard let list = SimplonValue.value(response.body) as? [Any], list.allSatisfy({ $0 is String }) else {
          context.reportError("bad-json", "the file list at \(listURL) is not a JSON list of names")
          return true
        }
        names = list.compactMap { $0 as? String }
      }
      let listed = Set(names)
      for name in known.keys where !listed.contains(name) {
        if known[name]?.deleted == true {
          known[name] = nil  // gone as asked: a file of that name later is a new file
        } else {
          known[name]?.listed = false
        }
      }
      for name in names where wanted(name) {
        if context.isStopping { break }
        if let file = known[name] {
          if file.listed { continue }
          // Gone from the list and back: send it again only if it changed.
          if let version = head(name, context), version.size == file.size, version.modified == file.modified {
            known[name]?.listed = true
            continue
          }
        }
        guard safe(name, context) else { continue }
        guard download(name, context) else { return false }
        settle(verdicts.take(), context)
      }
      return true
    }

    func wanted(_ name: String) -> Bool {
      include.isEmpty || include.contains { $0.matches(name) }
    }

    /// A name that can be asked for under `/data/` without leaving it.
    mutating func safe(_ name: String, _ context: StageContext) -> Bool {
      let components = name.split(separator: "/", omittingEmptySubsequences: false)
      let ok =
        !name.isEmpty && !name.hasPrefix("/")
        && !components.contains { $0.isEmpty || $0 == "." || $0 == ".." }
        && !name.utf8.contains { $0 < 0x20 || $0 == 0x7f }
      if !ok, rejected.insert(name).inserted {
        context.reportError(
          "bad-name", "file name '\(name)' from the detector is not a safe relative path; skipped")
      }
      return ok
    }

    /// The size and modification time the detector reports for a file, or nil.
    func head(_ name: String, _ context: StageContext) -> (size: Int, modified: String?)? {
      guard let http else { return nil }
      let result = http.fetch(
        StageHTTP.url(base, "data/" + name), method: .HEAD, maxBody: 0, timeout: .seconds(10),
        cancelWhen: { context.isStopping })
      guard case .success(let response) = result, response.status == .ok,
        let size = response.headers.first(name: "content-length").flatMap({ Int($0) })
      else { return nil }
      return (size, response.headers.first(name: "last-modified"))
    }

    /// Downloads one file and sends it. False when the run is over.
    mutating func download(_ name: String, _ context: StageContext) -> Bool {
      guard let http else { return true }
      let url = StageHTTP.url(base, "data/" + name)
      // A transfer in progress finishes when the run stops (bounded by the read timeout).
      let result = http.perform(
        url, delegate: DownloadDelegate(chunkSize: chunkSize), timeout: .hours(24),
        cancelWhen: { context.isAborted })
      let file: DownloadDelegate.Download
      switch result {
      case .failure(let error):
        if !context.isAborted { context.reportError("download", "cannot download '\(name)': \(error)") }
        return true
      case .success(let download) where download.status != .ok:
        let text = download.errorText.split(whereSeparator: \.isNewline).first.map { ": \($0)" } ?? ""
        context.reportError(
          "download",
          "cannot download '\(name)': HTTP \(download.status.code) \(download.status.reasonPhrase)\(text)")
        return true
      case .success(let download):
        file = download
      }
      if let expected = file.expected, expected != file.bytes {
        context.reportError(
          "incomplete", "'\(name)': received \(file.bytes) of \(expected) bytes; tried again at the next poll"
        )
        return true
      }
      id += 1
      var attributes = ["size": String(file.bytes)]
      if let modified = file.lastModified { attributes["last_modified"] = modified }
      let lower = name.lowercased()
      let hdf5 = lower.hasSuffix(".h5") || lower.hasSuffix(".hdf5") || lower.hasSuffix(".nxs")
      let meta = FrameMeta(
        id: id, series: 1, frame: index, name: name, createdNanos: wallNanos(),
        contentType: hdf5 ? "application/x-hdf5" : "application/octet-stream", attributes: attributes)
      var frame = Frame(kind: .data, meta: meta, parts: file.parts)
      if delete {
        let verdicts = verdicts
        let size = file.bytes
        frame.track(
          Ledger { confirmed in verdicts.post(Verdict(name: name, size: size, confirmed: confirmed)) })
        outstanding += 1
      }
      known[name] = Known(size: file.bytes, modified: file.lastModified, listed: true)
      index += 1
      return context.emit(consume frame)
    }
  }
}
