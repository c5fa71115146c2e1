import HidraGraph
import Testing

@Suite struct UnitsTests {
  @Test func sizes() {
    #expect(Units.parseSize("4096") == 4096)
    #expect(Units.parseSize("64KiB") == 65536)
    #expect(Units.parseSize("16 MiB") == 16 << 20)
    #expect(Units.parseSize("2GiB") == 2 << 30)
    #expect(Units.parseSize("1.5GB") == 1_500_000_000)
    #expect(Units.parseSize("1.5KiB") == 1536)
    for bad in ["", "big", "-1", "64MB/s", "12 parsecs", "1e3", "KiB"] {
      #expect(Units.parseSize(bad) == nil, "\(bad)")
    }
    #expect(Units.formatSize(64 << 20) == "64MiB")
    #expect(Units.formatSize(1000) == "1000B")
  }

  @Test func durations() {
    #expect(Units.parseDuration("500ms") == 0.5)
    #expect(Units.parseDuration("10s") == 10)
    #expect(Units.parseDuration("5min") == 300)
    #expect(Units.parseDuration("2h") == 7200)
    #expect(Units.parseDuration("10") == nil, "a bare number has no unit")
    #expect(Units.parseDuration("soon") == nil)
    #expect(Units.formatDuration(300) == "5min")
    #expect(Units.formatDuration(0.25) == "250ms")
  }

  @Test func rates() {
    #expect(Units.parseRate("10/s") == 10)
    #expect(Units.parseRate("600/min") == 10)
    #expect(Units.parseRate("2.5/s") == 2.5)
    #expect(Units.parseRate("1kHz") == 1000)
    #expect(Units.parseRate("100Hz") == 100)
    #expect(Units.parseRate("fast") == nil)
    #expect(Units.parseRate("10/fortnight") == nil)
  }
}

@Suite struct SuggestTests {
  @Test func nearestNames() {
    #expect(Suggest.nearest(to: "algorithm", in: ["algorithms", "mode"]) == "algorithms")
    #expect(Suggest.nearest(to: "lastest", in: ["guaranteed", "best-effort", "latest"]) == "latest")
    #expect(Suggest.nearest(to: "rooot", in: ["root", "path"]) == "root")
    #expect(Suggest.nearest(to: "xyz", in: ["root", "path"]) == nil, "too far to be a typo")
    #expect(Suggest.editDistance("ab", "ba") == 1, "a transposition is one edit")
    #expect(Suggest.editDistance("kitten", "sitting") == 3)
  }
}

@Suite struct EndpointTests {
  func parse(_ text: String, _ schemes: [String] = ["tcp", "ipc", "http"], role: EndpointRole = .listen)
    -> Endpoint?
  {
    try? Endpoint.parse(text, schemes: schemes, role: role).get()
  }

  func error(_ text: String, _ schemes: [String] = ["tcp", "ipc", "http"], role: EndpointRole = .listen)
    -> EndpointError?
  {
    if case .failure(let error) = Endpoint.parse(text, schemes: schemes, role: role) { return error }
    return nil
  }

  @Test func accepted() {
    #expect(parse("tcp://*:5600") == Endpoint(scheme: "tcp", host: "*", port: 5600, path: ""))
    #expect(parse("tcp://127.0.0.1:*")?.port == nil)
    #expect(parse("tcp://[::1]:9999")?.host == "::1")
    #expect(parse("ipc:///tmp/hidra.sock")?.path == "/tmp/hidra.sock")
    #expect(parse("http://0.0.0.0:8080/monitor")?.path == "/monitor")
    #expect(parse("http://dcu")?.port == 80)
  }

  @Test func rejectedWithOffsets() {
    #expect(error("localhost:5600")?.message.contains("SCHEME://") == true)
    #expect(error("udp://x:1")?.message.contains("not allowed") == true)
    #expect(error("tcp://host")?.message.contains("needs a port") == true)
    #expect(error("tcp://host:port")?.offset == 11, "points at the port")
    #expect(error("tcp://host:0")?.message.contains("1 to 65535") == true)
    #expect(error("tcp://*:5600", role: .connect)?.message.contains("cannot connect") == true)
    #expect(error("tcp://host:1/path") != nil)
    #expect(error("tcp://bad host:1") != nil)
  }

  @Test func conflicts() {
    let any = parse("tcp://*:5600")!
    #expect(any.conflicts(with: parse("tcp://0.0.0.0:5600")!))
    #expect(any.conflicts(with: parse("tcp://127.0.0.1:5600")!))
    #expect(!any.conflicts(with: parse("tcp://*:5601")!))
    #expect(!parse("tcp://127.0.0.1:5600")!.conflicts(with: parse("tcp://127.0.0.2:5600")!))
    #expect(parse("http://*:8080")!.conflicts(with: parse("tcp://*:8080")!), "one port, one listener")
    #expect(parse("ipc:///a")!.conflicts(with: parse("ipc:///a")!))
  }
}

@Suite struct PathTemplateTests {
  let fields = ["series", "frame", "name"]

  @Test func rendersPaddedFields() throws {
    let template = try PathTemplate.parse(
      "{series}/{series}_{frame:06}.bin", allowed: fields, attributes: false
    ).get()
    #expect(template.fields == ["series", "series", "frame"])
    let values = ["series": "7", "frame": "42"]
    #expect(template.render { values[$0]! } == "7/7_000042.bin")
    let spaced = try PathTemplate.parse("{frame:4}|{{x}}", allowed: fields, attributes: false).get()
    #expect(spaced.render { _ in "5" } == "   5|{x}")
  }

  @Test func rendersByPositionInFields() throws {
    var template = try PathTemplate.parse(
      "{series}/{series}_{frame:06}.bin", allowed: fields, attributes: false
    ).get()
    var asked: [Int] = []
    let rendered = template.renderByPosition { position -> PathTemplate.FieldValue in
      asked.append(position)
      return .integer([7, 8, 42][position])
    }
    #expect(rendered == "7/8_000042.bin")
    #expect(asked == [0, 1, 2], "each field once, by its place in `fields`")
    // What renders follows the segments when they change.
    let before = template
    template.segments.append(.literal(".gz"))
    #expect(template.render { _ -> PathTemplate.FieldValue in .integer(1) } == "1/1_000001.bin.gz")
    #expect(template != before)
    template.segments.removeLast()
    #expect(template == before && template.hashValue == before.hashValue)
  }

  @Test(
    "numbers render as their text would, padded the same way",
    arguments: [0, 7, 42, 123_456, 9_999_999, -3, -42, Int.max, Int.min])
  func rendersNumbersAsText(number: Int) throws {
    for template in ["{frame}", "{frame:06}", "{frame:4}", "{frame:1}", "s{series:03}/{frame:06}.raw"] {
      let parsed = try PathTemplate.parse(template, allowed: fields, attributes: false).get()
      let asNumber = parsed.render { _ -> PathTemplate.FieldValue in .integer(number) }
      #expect(asNumber == parsed.render { _ in String(number) }, "\(template) with \(number)")
    }
    let zeroPadded = try PathTemplate.parse("{frame:06}", allowed: fields, attributes: false).get()
    #expect(zeroPadded.render { _ in "-42" } == "-00042", "zeros go after the sign")
  }

  @Test func rendersNamesLongerThanTheStackBuffer() throws {
    let template = try PathTemplate.parse("{name}/{frame:08}_{name}", allowed: fields, attributes: false)
      .get()
    let long = String(repeating: "ä", count: 300)  // 600 bytes of UTF-8
    let rendered = template.render { field -> PathTemplate.FieldValue in
      field == "frame" ? .integer(12) : .text(long)
    }
    #expect(rendered == long + "/00000012_" + long)
    let padded = try PathTemplate.parse("{name:5}|", allowed: fields, attributes: false).get()
    #expect(
      padded.render { _ -> PathTemplate.FieldValue in .text("äb") } == "   äb|", "padding counts characters")
    #expect(padded.render { _ -> PathTemplate.FieldValue in .text("") } == "     |")
  }

  @Test func attributesOnlyWhenAllowed() {
    #expect((try? PathTemplate.parse("{attr.sample}", allowed: fields, attributes: true).get()) != nil)
    #expect((try? PathTemplate.parse("{attr.sample}", allowed: fields, attributes: false).get()) == nil)
  }

  @Test func errorsPointInsideTheTemplate() {
    func failure(_ text: String) -> PathTemplate.ParseError? {
      if case .failure(let error) = PathTemplate.parse(text, allowed: fields, attributes: false) {
        return error
      }
      return nil
    }
    #expect(failure("{series}/{frme}")?.offset == 10)
    #expect(failure("{series}/{frme}")?.hint == "did you mean 'frame'?")
    #expect(failure("a/{frame")?.message.contains("unclosed") == true)
    #expect(failure("/abs/{frame}")?.offset == 0)
    #expect(failure("a/../{frame}")?.offset == 2)
    #expect(failure("{frame:xx}")?.offset == 7)
    #expect(failure("a}")?.offset == 1)
  }
}

@Suite struct GlobTests {
  @Test func matching() throws {
    func glob(_ pattern: String) throws -> Glob { try Glob.parse(pattern).get() }
    #expect(try glob("*.cbf").matches("a.cbf"))
    #expect(try !glob("*.cbf").matches("dir/a.cbf"), "* does not cross '/'")
    #expect(try glob("**/*.cbf").matches("dir/sub/a.cbf"))
    #expect(try glob("**/*.cbf").matches("a.cbf"), "**/ also matches no directory")
    #expect(try glob("img_??.h5").matches("img_01.h5"))
    #expect(try !glob("img_??.h5").matches("img_1.h5"))
    #expect(try glob("[a-c]x").matches("bx"))
    #expect(try !glob("[!a-c]x").matches("bx"))
    #expect(try glob("\\*").matches("*"))
    #expect(throws: Glob.ParseError.self) { try Glob.parse("[abc").get() }
    #expect(throws: Glob.ParseError.self) { try Glob.parse("").get() }
  }
}
