import HidraRuntime
import Testing

/// `Checksums` reads and writes like a `[String: String]`, whatever it keeps inside.
@Suite struct ChecksumsTests {
  @Test func readsBackWhatWasWritten() {
    var sums = Checksums()
    #expect(sums.isEmpty && sums.count == 0)
    sums.set("xxh3", 0x9a0b_3c5d_1e2f_4a6b)
    sums["xxh64"] = "000000000000ff00"
    sums["sha256"] = "abc"
    #expect(sums["xxh3"] == "9a0b3c5d1e2f4a6b")
    #expect(sums["xxh64"] == "000000000000ff00")
    #expect(sums["sha256"] == "abc")
    #expect(sums["md5"] == nil)
    #expect(sums.count == 3)
    #expect(sums.dictionary == ["xxh3": "9a0b3c5d1e2f4a6b", "xxh64": "000000000000ff00", "sha256": "abc"])
    #expect(Dictionary(uniqueKeysWithValues: Array(sums)) == sums.dictionary)
  }

  @Test func keepsOtherSpellingsAsTheyCame() {
    // Upper case, short, long and non-hex digests of a 64-bit algorithm come back unchanged.
    for text in ["9A0B3C5D1E2F4A6B", "00ff", "9a0b3c5d1e2f4a6b00", "zzzzzzzzzzzzzzzz", ""] {
      var sums = Checksums()
      sums["xxh3"] = text
      #expect(sums["xxh3"] == text)
      #expect(sums.count == 1)
    }
  }

  @Test func replacesAndRemovesWhicheverFormItHas() {
    var sums: Checksums = ["xxh3": "00FF"]
    sums["xxh3"] = "00000000000000ff"
    #expect(sums["xxh3"] == "00000000000000ff" && sums.count == 1)
    sums["xxh3"] = "00FF"
    #expect(sums["xxh3"] == "00FF" && sums.count == 1)
    sums.set("xxh3", 1)
    #expect(sums["xxh3"] == "0000000000000001" && sums.count == 1)
    sums["xxh3"] = nil
    #expect(sums.isEmpty && sums["xxh3"] == nil)
  }

  @Test func equalWhenTheDigestsAreEqual() {
    var computed = Checksums()
    computed.set("xxh3", 0xff)
    #expect(computed == ["xxh3": "00000000000000ff"])
    #expect(
      computed != ["xxh3": "00000000000000FF"],
      "a different spelling is a different value, as in a dictionary")
    #expect(
      Checksums(["md5": "x", "xxh64": "0000000000000001"]) == ["xxh64": "0000000000000001", "md5": "x"])
  }
}
