import Foundation
import HidraGraph
import HidraNodes
import Testing

/// The example graphs in `graphs/` are what users copy: each must be valid and
/// free of warnings, with its `${VAR:-default}` defaults.
@Suite struct ExampleGraphTests {
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

  static var examples: [String] {
    let names =
      (try? FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("graphs").path)) ?? []
    return names.filter { $0.hasSuffix(".yaml") }.sorted()
  }

  @Test func theIssueNamedExamplesExist() {
    for name in ["demo", "eiger-storage-onda", "pilatus-directory", "two-hosts", "archive-with-spool"] {
      #expect(Self.examples.contains(name + ".yaml"))
    }
  }

  @Test(arguments: examples)
  func exampleIsValidWithoutWarnings(_ name: String) throws {
    let text = try String(contentsOf: Self.root.appendingPathComponent("graphs/" + name), encoding: .utf8)
    let result = GraphValidator(catalog: NodeTypes.catalog).validate(text: text, file: name, environment: [:])
    #expect(result.diagnostics.all.isEmpty, "\(result.diagnostics.sorted.map(\.description))")
    #expect(result.isValid)
  }

  /// docs/graph-reference.md is generated from the declarations; a stale copy fails here.
  @Test func referenceIsUpToDate() throws {
    let committed = try String(
      contentsOf: Self.root.appendingPathComponent("docs/graph-reference.md"), encoding: .utf8)
    #expect(
      committed == Reference.markdown(NodeTypes.catalog),
      "docs/graph-reference.md is stale: run `make reference`")
  }
}

/// The README's first graph is the first thing users copy: it must be valid.
@Suite struct ReadmeTests {
  @Test func firstGraphIsValid() throws {
    let readme = try String(
      contentsOf: ExampleGraphTests.root.appendingPathComponent("README.md"), encoding: .utf8)
    let block = try #require(
      readme.split(separator: "```yaml\n").dropFirst().first?.split(separator: "```").first)
    let result = GraphValidator(catalog: NodeTypes.catalog).validate(text: String(block), file: "p11.yaml")
    #expect(result.isValid, "\(result.diagnostics.sorted.map(\.description))")
    #expect(result.graph?.nodes.count == 4)
  }
}
