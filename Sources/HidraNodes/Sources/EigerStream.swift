import HidraGraph

/// `eiger-stream`: the DECTRIS SIMPLON stream interface (v1 JSON, v2 CBOR).
public enum EigerStreamSource {
  public static let spec = NodeTypeSpec(
    name: "eiger-stream", kind: .source,
    summary: "the ZeroMQ stream of a DECTRIS EIGER detector (stream v1 and v2)",
    details: """
      Connects a PULL socket to the detector control unit. The detector's PUSH socket round-robins \
      between connected clients, so Hidra must be its only client and fans out itself. The series \
      header becomes a control frame delivered to every branch; each image becomes a data frame whose \
      payload is passed on untouched (still compressed).
      """,
    options: [
      OptionSpec(
        "endpoint", .endpoint(schemes: ["tcp", "ipc"], role: .connect), required: true,
        doc: "The detector's stream address, e.g. `tcp://dcu:9999` (v1) or `tcp://dcu:31001` (v2)."),
      OptionSpec(
        "version", .choice(["auto", "1", "2"]), default: "auto",
        doc: "Stream format: v1 (JSON multipart), v2 (CBOR), or detected from the first message."),
      OptionSpec(
        "api", .endpoint(schemes: ["http"], role: .connect),
        doc: "The detector's SIMPLON REST address, to read the stream's status and config."),
      OptionSpec("api_version", .string, default: "1.8.0", doc: "SIMPLON API version used with `api`."),
      OptionSpec(
        "receive_buffer", .integer(min: 1), default: "1000",
        doc: "ZeroMQ receive high-water mark in messages."),
    ],
    example: """
      detector:
        type: eiger-stream
        endpoint: tcp://dcu.example:9999
      """)
}
