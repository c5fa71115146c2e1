import HidraGraph
import HidraNodes
import Testing

/// Behaviour of the validator beyond the golden corpus: the graph it builds,
/// defaults, QoS values, and the environment.
@Suite struct ValidatorTests {
  func validate(_ text: String, environment: [String: String] = [:]) -> ValidationResult {
    GraphValidator(catalog: NodeTypes.catalog).validate(text: text, file: "g.yaml", environment: environment)
  }

  @Test func buildsTheGraphWithDefaultsAndQoS() throws {
    let result = validate(
      """
      graph: t
      nodes:
        det:
          type: generate
          count: 10
        disk:
          type: store
          input: det
          root: /data
        live:
          type: forward
          input: {from: det, delivery: latest, buffer: {frames: 2, bytes: 64MiB}, sample: {every: 3}, rate: {max: 5/s}}
          listen: tcp://*:5600
      """)
    #expect(result.diagnostics.all.isEmpty, "\(result.diagnostics.sorted)")
    let graph = try #require(result.graph)
    #expect(graph.name == "t")
    #expect(graph.nodes.map(\.name) == ["det", "disk", "live"])
    let det = try #require(graph.node("det"))
    #expect(det["count"] == .integer(10))
    #expect(det["size"] == .bytes(1 << 20), "the declared default")
    #expect(det["dtype"] == .string("uint16"))
    let disk = try #require(graph.node("disk"))
    #expect(disk["fsync"] == .string("file"))
    #expect(disk.inputs.first?.qos == EdgeQoS(delivery: .guaranteed))
    #expect(disk.inputs.first?.qos.bufferFrames == 1024)
    let live = try #require(graph.node("live")?.inputs.first)
    #expect(live.qos.delivery == .latest)
    #expect(live.qos.bufferFrames == 2)
    #expect(live.qos.bufferBytes == 64 << 20)
    #expect(live.qos.sampleEvery == 3)
    #expect(live.qos.maxRate == 5)
    #expect(graph.consumers(of: "det").map(\.to) == ["disk", "live"])
  }

  @Test func latestEdgeDefaultsToFourFrames() throws {
    let result = validate(
      """
      nodes:
        det: {type: generate}
        live: {type: forward, input: {from: det, delivery: latest}, pattern: pub, listen: "tcp://*:5600"}
      """)
    #expect(result.isValid)
    #expect(result.graph?.node("live")?.inputs.first?.qos.bufferFrames == 4)
    #expect(result.graph?.name == "g", "the file name when 'graph:' is absent")
  }

  @Test func environmentSubstitution() throws {
    let text = """
      nodes:
        det: {type: generate}
        disk: {type: store, input: det, root: "${ROOT}/raw/$${literal}", path: "${SUB:-default}/{frame}"}
      """
    let result = validate(text, environment: ["ROOT": "/gpfs"])
    #expect(result.isValid, "\(result.diagnostics.sorted)")
    let disk = try #require(result.graph?.node("disk"))
    #expect(disk["root"] == .string("/gpfs/raw/${literal}"))
    #expect(disk["path"] == .string("default/{frame}"))
    let unset = validate(text)
    #expect(
      unset.diagnostics.errors.map(\.description) == [
        "g.yaml:3:42: error: environment variable 'ROOT' is not set; set it, or give a default with '${ROOT:-default}'"
      ])
  }

  @Test func everyProblemInOnePass() {
    let result = validate(
      """
      nodes:
        det: {type: generate, colour: red}
        sum: {type: checksum, input: det, algorithms: [crc]}
        disk: {type: store, input: summ}
      """)
    let messages = result.diagnostics.sorted.map(\.description)
    #expect(messages.count == 4, "\(messages)")
    // 'summ' most likely meant 'sum': no noise about sum's output being unread.
    #expect(!messages.contains { $0.contains("is not read") })
    #expect(messages.contains { $0.hasPrefix("g.yaml:2:25: error: unknown option 'colour'") })
    #expect(messages.contains { $0.hasPrefix("g.yaml:3:50: error: 'algorithms' must be one of") })
    #expect(
      messages.contains {
        $0.hasPrefix("g.yaml:4:3: error: store node 'disk' is missing required option 'root'")
      })
    #expect(
      messages.contains {
        $0 == "g.yaml:4:30: error: node 'disk' reads from unknown node 'summ'; did you mean 'sum'?"
      })
  }

  @Test func everyDeclaredDefaultReadsAsItsType() {
    // OptionReader traps on a default that does not read as its declared type, so
    // validating one node of each type with only its required options exercises all.
    for spec in NodeTypes.all {
      var lines = ["nodes:", "  n:", "    type: \(spec.name)"]
      for option in spec.options where option.required {
        switch option.type {
        case .endpoint(let schemes, _): lines.append("    \(option.name): \(schemes[0])://127.0.0.1:5600")
        case .path: lines.append("    \(option.name): /data")
        default: lines.append("    \(option.name): x")
        }
      }
      let result = validate(lines.joined(separator: "\n"))
      #expect(result.graph?.node("n") != nil, "\(spec.name): \(result.diagnostics.sorted)")
    }
  }

  @Test func syntaxErrorHasItsPosition() {
    let result = validate("nodes:\n  det:\n    type: generate\n   bad: [\n")
    #expect(result.graph == nil)
    #expect(result.diagnostics.errors.count == 1)
    #expect(result.diagnostics.errors.first?.location.line ?? 0 >= 4)
  }

  @Test func planUsesQueuesWithinAHostAndTCPAcross() throws {
    let result = validate(
      """
      graph: two
      hosts:
        a: {address: 127.0.0.1}
        b: {address: 127.0.0.2, base_port: 7000}
      nodes:
        det: {type: generate, host: a}
        f: {type: filter, input: det, every: 2, host: a}
        disk: {type: store, input: f, root: /data, host: b}
        disk2: {type: store, input: det, root: /data2, host: b}
      """)
    #expect(result.isValid, "\(result.diagnostics.sorted)")
    let plan = Plan(try #require(result.graph))
    #expect(plan.stages.map(\.host) == ["a", "a", "b", "b"])
    #expect(
      plan.links.map(\.connect) == [
        "in-process queue", "tcp://127.0.0.2:7000", "tcp://127.0.0.2:7001",
      ])
    #expect(plan.links[1].bind == "tcp://*:7000")
  }

  @Test func drawingsNameEveryNodeAndEdge() throws {
    let graph = try #require(
      validate(
        """
        nodes:
          det: {type: generate}
          disk: {type: store, input: det, root: /d}
          live: {type: forward, input: {from: det, delivery: latest}, pattern: pub, listen: "tcp://*:1"}
        """
      ).graph)
    let dot = Rendering.dot(graph)
    #expect(dot.contains("\"det\" -> \"disk\" [label=\"guaranteed, 1024 frames / 1GiB\"];"))
    #expect(dot.contains("\"det\" -> \"live\" [label=\"latest, 4 frames / 256MiB\", style=dashed];"))
    let mermaid = Rendering.mermaid(graph)
    #expect(mermaid.contains("n_det -.->|\"latest, 4 frames / 256MiB\"| n_live"))
    #expect(mermaid.contains("n_disk[(\"disk<br/>store\")]"))
  }

  @Test func jsonDiagnosticsAreEscaped() {
    let json = Rendering.json([
      Diagnostic(.error, at: SourceLocation(file: "a\"b.yaml", line: 1, column: 2), "bad\nthing", hint: "x")
    ])
    #expect(json.contains(#""file": "a\"b.yaml""#))
    #expect(json.contains(#""message": "bad\nthing""#))
    #expect(Rendering.json([]) == "[]")
  }
}

extension ValidatorTests {
  /// A source that removes originals once its guaranteed sinks confirmed them is
  /// warned about when no guaranteed path leads to a sink.
  @Test func warnsWhenNothingWouldConfirmACleanup() {
    func warnings(_ nodes: String) -> [String] {
      validate("graph: t\nnodes:\n" + nodes).diagnostics.sorted.filter { $0.severity == .warning }.map(
        \.description)
    }
    let live =
      "  live: {type: forward, input: {from: det, delivery: latest}, pattern: pub, listen: tcp://*:5610}\n"
    let lossy = warnings("  det: {type: directory, path: /ramdisk, on_done: delete}\n" + live)
    #expect(lossy.count == 1)
    #expect(
      lossy.first?.contains("g.yaml:3:51: warning: 'on_done' removes each original") == true, "\(lossy)")
    let writer = warnings(
      "  det: {type: eiger-filewriter, url: http://dcu.example, delete: true}\n"
        + "  pick: {type: filter, input: det, glob: ['*.h5']}\n"
        + "  disk: {type: store, input: {from: pick, delivery: best-effort}, root: /data}\n")
    #expect(writer.contains { $0.contains("'delete' removes each original of eiger-filewriter node 'det'") })
    // A guaranteed path through a filter to a store: nothing to warn about.
    let stored = warnings(
      "  det: {type: directory, path: /ramdisk, on_done: 'move:/done'}\n"
        + "  pick: {type: filter, input: det, glob: ['*.cbf']}\n"
        + "  disk: {type: store, input: pick, root: /data}\n" + live)
    #expect(stored.isEmpty, "\(stored)")
    // Keeping the originals needs no sink.
    #expect(warnings("  det: {type: directory, path: /ramdisk}\n" + live).isEmpty)
  }
}
