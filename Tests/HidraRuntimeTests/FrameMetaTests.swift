import HidraRuntime
import Testing

/// `FrameMeta` keeps its payload description out of line, and only when it
/// differs from the defaults; none of that may show.
@Suite struct FrameMetaTests {
  @Test func aFrameIsMovedInline() {
    // Swift moves values of up to 128 bytes without calling memcpy; a frame
    // moves several times on its way between stages (docs/architecture.md).
    #expect(MemoryLayout<Frame>.size <= 128)
  }

  @Test func detailsReadBackAsGivenOrDefault() {
    let plain = FrameMeta(id: 7, series: 2, frame: 3)
    #expect(plain.contentType == "application/octet-stream" && plain.encoding == "raw")
    #expect(plain.shape == nil && plain.dtype == nil && plain.attributes.isEmpty)

    let image = FrameMeta(
      id: 8, contentType: "application/x-bitshuffle", encoding: "bs32-lz4", shape: [4, 2], dtype: "uint32",
      attributes: ["series_name": "lysozyme"])
    #expect(image.contentType == "application/x-bitshuffle" && image.encoding == "bs32-lz4")
    #expect(
      image.shape == [4, 2] && image.dtype == "uint32" && image.attributes == ["series_name": "lysozyme"])
  }

  @Test func equalityAndHashDoNotDependOnTheBox() {
    // Given the defaults explicitly, set and set back, or never set: all equal.
    let never = FrameMeta(id: 1, name: "a")
    let explicit = FrameMeta(
      id: 1, name: "a", contentType: "application/octet-stream", encoding: "raw", attributes: [:])
    var setBack = FrameMeta(id: 1, name: "a")
    setBack.encoding = "lz4"
    #expect(setBack != never)
    setBack.encoding = "raw"
    for meta in [explicit, setBack] {
      #expect(meta == never)
      #expect(meta.hashValue == never.hashValue)
    }
    var other = never
    other.attributes["x"] = "1"
    #expect(other != never)
    #expect(Set([never, explicit, setBack, other]).count == 2)
  }

  @Test func copiesDoNotShareChanges() {
    var first = FrameMeta(id: 1, encoding: "lz4", shape: [2, 2])
    let copy = first
    first.shape = [8, 8]
    first.attributes["k"] = "v"
    #expect(copy.shape == [2, 2] && copy.attributes.isEmpty && copy.encoding == "lz4")
    #expect(first.shape == [8, 8] && first.attributes == ["k": "v"] && first.encoding == "lz4")

    // And a copy of a frame whose details are all defaults.
    var plain = FrameMeta(id: 2)
    let plainCopy = plain
    plain.dtype = "uint16"
    #expect(plainCopy.dtype == nil && plain.dtype == "uint16")
  }

  @Test func framesCountTheirBytesWithOneOrManyParts() {
    let one = Payload(copying: [1, 2, 3])
    let two = Payload(copying: [4, 5])
    #expect(Frame(kind: .data, meta: FrameMeta(), parts: [one]).byteCount == 3)
    #expect(Frame(kind: .data, meta: FrameMeta(), parts: [one, two]).byteCount == 5)
    #expect(Frame(kind: .data, meta: FrameMeta(), parts: []).byteCount == 0)
    #expect(PayloadParts(one).singlePartBytes?.count == 3)
    #expect(PayloadParts([one, two]).singlePartBytes == nil)
    #expect(PayloadParts().singlePartBytes == nil)
  }
}
