import HidraGraph

/// `zmq`: frames in Hidra's native wire protocol, from another Hidra or any producer.
public enum ZMQSource {
  public static let spec = NodeTypeSpec(
    name: "zmq", kind: .source,
    summary: "frames in Hidra's native wire protocol (docs/wire.md), from another Hidra or any producer",
    details: """
      Receives multipart messages in the native protocol. Malformed, truncated, oversized or \
      wrong-version messages are counted and dropped; they never stop the node.
      """,
    options: [
      OptionSpec(
        "listen", .endpoint(schemes: ["tcp", "ipc"], role: .listen),
        doc: "Bind here and let producers connect."),
      OptionSpec(
        "connect", .endpoint(schemes: ["tcp", "ipc"], role: .connect),
        doc: "Connect to a producer that binds."),
      OptionSpec(
        "pattern", .choice(["pull", "sub"]), default: "pull",
        doc: "Socket pattern: `pull` (from push) or `sub` (from pub)."),
      OptionSpec(
        "max_message", .size(min: 1024), default: "256MiB",
        doc: "Messages larger than this are rejected and counted."),
    ],
    constraints: [.exactlyOne(["listen", "connect"])],
    example: """
      upstream:
        type: zmq
        listen: tcp://*:5600
      """)
}
