import HidraGraph

/// `eiger-filewriter`: files the EIGER's file writer offers over HTTP.
public enum EigerFileWriterSource {
  public static let spec = NodeTypeSpec(
    name: "eiger-filewriter", kind: .source,
    summary: "HDF5 files pulled from an EIGER's SIMPLON file writer over HTTP",
    details: """
      Polls `/filewriter/api/<version>/files`, downloads each new file from `/data/<name>` with bounded \
      memory, and with `delete: true` removes it from the detector only after every guaranteed sink \
      has confirmed it.
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
        delete: true
      """)
}
