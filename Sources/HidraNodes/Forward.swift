import HidraGraph

/// `forward`: sends frames out of the graph to consumers over the network.
public enum ForwardNode {
  public static let formats = [
    "native", "simplon-monitor", "hidra-transfer", "eiger-stream-v1", "eiger-stream-v2",
  ]

  public static let spec = NodeTypeSpec(
    name: "forward", kind: .forward,
    summary:
      "sends frames to consumers: Hidra's native protocol, SIMPLON monitor (OnDA), HiDRA or EIGER stream",
    details: """
      `native` speaks Hidra's wire protocol (docs/wire.md) over ZeroMQ with the chosen `pattern`. \
      `simplon-monitor` serves the EIGER monitor HTTP interface so OnDA reads from Hidra as from a \
      detector. `hidra-transfer` serves HiDRA's Transfer API for existing HiDRA clients. \
      `eiger-stream-v1`/`-v2` re-emit the detector stream so several stream readers can attach. \
      On a guaranteed edge, a native push forward waits for consumers' acknowledgements and resends \
      what was not acknowledged after a reconnect.
      """,
    options: [
      OptionSpec("format", .choice(formats), default: "native", doc: "What consumers speak."),
      OptionSpec(
        "pattern", .choice(["push", "pub", "request"]), default: "push",
        doc:
          "For native: `push` (load-balanced), `pub` (every subscriber; slow ones lose frames), `request` (a consumer asks and gets the newest frame)."
      ),
      OptionSpec(
        "listen", .endpoint(schemes: ["tcp", "ipc", "http"], role: .listen),
        doc: "Bind here and let consumers connect (`http://` for simplon-monitor)."),
      OptionSpec(
        "connect", .endpoint(schemes: ["tcp", "ipc"], role: .connect),
        doc: "Connect to a consumer that binds."),
      OptionSpec(
        "chunk_size", .size(min: 4096), default: "8MiB",
        doc: "Payloads larger than this travel in chunks of this size."),
      OptionSpec(
        "allowed_hosts", .list(.string), doc: "For hidra-transfer: hosts allowed to register as targets."),
      OptionSpec(
        "api_version", .string, default: "1.8.0", doc: "For simplon-monitor: the API version served."),
    ],
    constraints: [
      .exactlyOne(["listen", "connect"]),
      .onlyWhen(option: "pattern", when: "format", values: ["native"]),
      .onlyWhen(option: "allowed_hosts", when: "format", values: ["hidra-transfer"]),
      .onlyWhen(option: "api_version", when: "format", values: ["simplon-monitor"]),
    ],
    example: """
      live:
        type: forward
        input: {from: detector, delivery: latest, buffer: {frames: 4}}
        format: simplon-monitor
        listen: http://0.0.0.0:8080
      """,
    check: { check in
      let format = check.node["format"]?.string ?? "native"
      let address = check.node["listen"]?.string ?? check.node["connect"]?.string ?? ""
      let http = address.hasPrefix("http://")
      if format == "simplon-monitor" {
        if !http || check.node["connect"] != nil {
          check.error(
            check.node["listen"] != nil ? "listen" : "connect",
            "a simplon-monitor forward serves HTTP: it needs 'listen: http://HOST:PORT'")
        }
      } else if http {
        check.error("listen", "format '\(format)' speaks ZeroMQ: use a tcp:// or ipc:// address, not http://")
      }
      if format == "hidra-transfer", check.node["connect"] != nil {
        check.error("connect", "a hidra-transfer forward is a server: it needs 'listen: tcp://HOST:PORT'")
      }
    })
}
