import Foundation
import HidraGraph
import HidraNodes
import Testing

/// The invalid-graph corpus: every `Fixtures/invalid/NAME.yaml` is validated and its
/// diagnostics, one per line as `FILE:LINE:COLUMN: severity: message; hint`, must
/// equal `NAME.expected` exactly, line and column included.
///
/// To add a case, write the YAML, run the tests with `HIDRA_UPDATE_GOLDENS=1` to
/// write its `.expected`, and read that file before committing it: the golden is
/// only as right as the review.
@Suite struct GoldenCorpusTests {
  static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("Fixtures/invalid")

  /// The environment the corpus is checked with: `${HIDRA_SET}` is set, nothing else.
  static let environment = ["HIDRA_SET": "/data/set", "HIDRA_PORT": "5600"]

  static var cases: [String] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
    return names.filter { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) }.sorted()
  }

  static func diagnostics(for name: String) throws -> [String] {
    let text = try String(contentsOf: directory.appendingPathComponent(name + ".yaml"), encoding: .utf8)
    let result = GraphValidator(catalog: NodeTypes.catalog).validate(
      text: text, file: name + ".yaml", environment: environment)
    return result.diagnostics.sorted.map(\.description)
  }

  @Test func corpusIsLargeEnough() {
    #expect(Self.cases.count >= 40, "the corpus covers every check; it has \(Self.cases.count) cases")
  }

  @Test(arguments: cases)
  func matchesGolden(_ name: String) throws {
    let actual = try Self.diagnostics(for: name)
    let goldenURL = Self.directory.appendingPathComponent(name + ".expected")
    if ProcessInfo.processInfo.environment["HIDRA_UPDATE_GOLDENS"] == "1" {
      try (actual.joined(separator: "\n") + "\n").write(to: goldenURL, atomically: true, encoding: .utf8)
    }
    let golden = try String(contentsOf: goldenURL, encoding: .utf8)
      .split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
    #expect(actual == golden)
    // Every case in this corpus is invalid: at least one error.
    #expect(actual.contains { $0.contains(": error: ") }, "\(name) should have an error")
  }
}
