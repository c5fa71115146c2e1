import ArgumentParser
import Foundation
import HidraGraph
import HidraNodes

@main
struct HidraRun: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "hidra-run",
    abstract: "Route detector frames to storage, analysis and archive, as one YAML graph describes.",
    discussion: """
      `hidra-run graph.yaml` (or `hidra-run run graph.yaml`) runs a graph. A graph file names its nodes (sources, filters, splits, checksums, stores and forwards) and \
      the edges between them, each edge with its own quality of service. Check a graph before beam \
      time with `hidra-run validate graph.yaml`, draw it with `hidra-run graph graph.yaml`, and see \
      what will run with `hidra-run plan graph.yaml`. `hidra-run nodes` lists every node type and \
      its options.

      Exit status: 0 success (warnings allowed), 1 the graph is invalid, 2 usage or I/O error.
      """,
    subcommands: [Run.self, Validate.self, Draw.self, Nodes.self, PlanCommand.self],
    defaultSubcommand: Run.self
  )

  /// Like ArgumentParser's `main()`, but usage errors exit with 2 (not 64), as the
  /// project's exit codes promise.
  static func main() {
    do {
      var command = try parseAsRoot()
      try command.run()
    } catch {
      let code = exitCode(for: error)
      let message = fullMessage(for: error)
      if !message.isEmpty {
        if code == .success { print(message) } else { printError(message) }
      }
      Foundation.exit(code == .validationFailure ? Exit.usage.rawValue : code.rawValue)
    }
  }
}

/// Exit codes shared by every command.
enum Exit {
  static let invalid = ExitCode(1)
  static let usage = ExitCode(2)
}

/// Reads and checks one graph file; I/O problems exit with status 2.
func loadGraph(_ path: String) throws -> ValidationResult {
  guard let data = FileManager.default.contents(atPath: path) else {
    let reason = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist"
    printError("hidra-run: \(path) \(reason)")
    throw Exit.usage
  }
  guard let text = String(data: data, encoding: .utf8) else {
    printError("hidra-run: \(path) is not UTF-8 text")
    throw Exit.usage
  }
  let validator = GraphValidator(catalog: NodeTypes.catalog)
  return validator.validate(text: text, file: path, environment: ProcessInfo.processInfo.environment)
}

/// Loads a graph for commands that need a valid one: diagnostics go to stderr and
/// an invalid graph exits with status 1.
func requireValidGraph(_ path: String) throws -> Graph {
  let result = try loadGraph(path)
  for diagnostic in result.diagnostics.sorted { printError(diagnostic.description) }
  guard result.isValid, let graph = result.graph else { throw Exit.invalid }
  return graph
}

func printError(_ text: String) {
  FileHandle.standardError.write(Data((text + "\n").utf8))
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
  case text, json
}

struct Validate: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Check graph files offline and report every problem at once.",
    discussion: """
      Each problem is printed as FILE:LINE:COLUMN: error|warning: message, with a suggestion \
      where a name looks misspelt. Every file is checked completely, so one run shows all that \
      needs fixing. With --format json the output is one JSON array of \
      {file, line, column, severity, message, hint} objects, for editors and CI.

      Exit status: 0 when every file is valid (warnings allowed), 1 when any file has an \
      error, 2 when a file cannot be read.
      """)

  @Argument(help: "Graph files to check.")
  var files: [String]

  @Option(help: "Output format: text or json.")
  var format: OutputFormat = .text

  @Flag(name: .shortAndLong, help: "Print only problems, not the summary line per file.")
  var quiet = false

  func run() throws {
    var all: [Diagnostic] = []
    var invalid = false
    for file in files {
      let result = try loadGraph(file)
      let diagnostics = result.diagnostics.sorted
      all += diagnostics
      invalid = invalid || !result.isValid
      guard format == .text else { continue }
      for diagnostic in diagnostics { print(diagnostic) }
      if !quiet {
        let errors = diagnostics.count { $0.severity == .error }
        let warnings = diagnostics.count { $0.severity == .warning }
        if result.isValid, let graph = result.graph {
          let summary =
            "\(file): valid graph '\(graph.name)', \(graph.nodes.count) nodes, \(graph.edges.count) edges"
          print(summary + (warnings > 0 ? ", \(plural(warnings, "warning"))" : ""))
        } else {
          print(
            "\(file): invalid, \(plural(errors, "error"))"
              + (warnings > 0 ? ", \(plural(warnings, "warning"))" : ""))
        }
      }
    }
    if format == .json { print(Rendering.json(all)) }
    if invalid { throw Exit.invalid }
  }
}

func plural(_ count: Int, _ word: String) -> String { "\(count) \(word)\(count == 1 ? "" : "s")" }

struct Draw: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "graph",
    abstract: "Draw a graph as Graphviz dot or Mermaid.",
    discussion: """
      Nodes are labelled with their name and type; edges with their delivery mode and buffer. \
      Dashed edges may drop frames (best-effort, latest). Pipe dot output to `dot -Tsvg`; paste \
      Mermaid output into Markdown.
      """)

  enum Format: String, ExpressibleByArgument, CaseIterable { case dot, mermaid }

  @Argument(help: "The graph file.")
  var file: String

  @Option(help: "dot or mermaid.")
  var format: Format = .dot

  func run() throws {
    let graph = try requireValidGraph(file)
    print(format == .dot ? Rendering.dot(graph) : Rendering.mermaid(graph), terminator: "")
  }
}

struct Nodes: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "List the node types, or describe one type's options.",
    discussion: """
      Without a type, lists every node type with a one-line summary. With a type, lists its \
      options: type, default, and what each does. --format markdown prints the whole graph \
      reference (docs/graph-reference.md is this output).
      """)

  enum Format: String, ExpressibleByArgument, CaseIterable { case text, markdown }

  @Argument(help: "A node type, such as store or eiger-stream.")
  var type: String?

  @Option(help: "text or markdown.")
  var format: Format = .text

  func run() throws {
    let catalog = NodeTypes.catalog
    if format == .markdown {
      print(Reference.markdown(catalog), terminator: "")
      return
    }
    guard let type else {
      let width = catalog.names.map(\.count).max() ?? 0
      for kind in NodeKind.allCases {
        print("\(kind.rawValue): \(kind.summary)")
        for spec in catalog.types where spec.kind == kind {
          print("  \(spec.name)\(String(repeating: " ", count: width - spec.name.count))  \(spec.summary)")
        }
      }
      print("\nhidra-run nodes TYPE describes a type's options.")
      return
    }
    guard let spec = catalog[type] else {
      let hint = Suggest.hint(for: type, in: catalog.names).map { "; \($0)" } ?? ""
      printError("hidra-run: unknown node type '\(type)'\(hint)")
      throw Exit.usage
    }
    print(Reference.text(spec), terminator: "")
  }
}

struct PlanCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "plan",
    abstract: "Show the stages and edges a graph compiles to, and the endpoints they use.",
    discussion: """
      Each node runs as a stage on its own thread, except cheap nodes (a filter, an xxh3/xxh64 \
      checksum) behind a plain guaranteed edge, which run fused on their producer's thread. Edges \
      within a host are bounded queues in one process; edges between hosts are TCP, bound by the \
      consuming host from its base_port.
      """)

  @Argument(help: "The graph file.")
  var file: String

  func run() throws {
    let graph = try requireValidGraph(file)
    print(Plan(graph, catalog: NodeTypes.catalog).text, terminator: "")
  }
}
