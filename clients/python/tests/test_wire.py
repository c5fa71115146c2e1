"""The decoder and chunk reassembly, on crafted multipart messages (no network)."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Tuple

import pytest

from hidra_client import Decoder, DecodeError, Frame, decode_header


def header(**fields: Any) -> bytes:
    base: Dict[str, Any] = {
        "hidra": 1,
        "kind": "data",
        "id": 1,
        "series": 1,
        "frame": 0,
        "name": "series_1/frame_000000.raw",
        "created_ns": 1764048000123456789,
        "size": 0,
        "content_type": "application/octet-stream",
        "encoding": "raw",
    }
    for key, value in fields.items():
        if value is _DROP:
            base.pop(key, None)
        else:
            base[key] = value
    return json.dumps(base).encode()


_DROP = object()


def chunked(ident: int, data: bytes, chunk_size: int, **fields: Any) -> List[List[bytes]]:
    count = (len(data) + chunk_size - 1) // chunk_size
    messages = []
    for index in range(count):
        start = index * chunk_size
        part = data[start : start + chunk_size]
        messages.append(
            [header(id=ident, size=len(data), chunk={"index": index, "count": count, "offset": start}, **fields), part]
        )
    return messages


def feed_all(decoder: Decoder, messages: List[List[bytes]]) -> List[Frame]:
    frames = []
    for message in messages:
        frame = decoder.feed(message)
        if frame is not None:
            frames.append(frame)
    return frames


# -- headers


def test_full_header_decodes_every_field() -> None:
    raw = (
        b'{"hidra":1,"kind":"data","id":42,"series":3,"frame":17,"name":"series_3/frame_000017.raw",'
        b'"created_ns":1764048000123456789,"size":4,"content_type":"application/octet-stream",'
        b'"encoding":"raw","shape":[1028,512],"dtype":"uint16",'
        b'"checksums":{"xxh3":"9a0b3c5d1e2f4a6b"},"attributes":{"beamline":"p11"},"future":[1,2]}'
    )
    decoder = Decoder()
    frame = decoder.feed([raw, b"ab", b"", b"cd"])
    assert frame is not None
    assert (frame.kind, frame.id, frame.series, frame.frame) == ("data", 42, 3, 17)
    assert frame.name == "series_3/frame_000017.raw"
    assert frame.created_ns == 1764048000123456789
    assert frame.size == 4 and bytes(frame.payload) == b"abcd"
    assert frame.shape == [1028, 512] and frame.dtype == "uint16"
    assert frame.checksums == {"xxh3": "9a0b3c5d1e2f4a6b"}
    assert frame.attributes == {"beamline": "p11"}
    assert frame.header["future"] == [1, 2]
    assert len(frame.parts) == 2  # the empty part is left out
    assert decoder.errors == {}


def test_defaults_for_optional_keys() -> None:
    frame = Decoder().feed([b'{"hidra":1,"kind":"series-end","size":0}'])
    assert frame is not None
    assert (frame.id, frame.series, frame.frame, frame.name, frame.created_ns) == (0, 0, 0, "", 0)
    assert frame.content_type == "application/octet-stream" and frame.encoding == "raw"
    assert frame.shape is None and frame.dtype is None and frame.checksums == {} and frame.attributes == {}
    assert frame.payload == b"" and frame.is_control


def test_single_part_payload_is_a_zero_copy_view() -> None:
    payload = bytearray(b"x" * 1000)
    frame = Decoder().feed([header(size=1000), payload])
    assert frame is not None
    assert isinstance(frame.payload, memoryview)
    payload[0] = ord("y")  # the view shares the part's memory
    assert bytes(frame.payload[:1]) == b"y"


def test_accepts_memoryview_parts() -> None:
    frame = Decoder().feed([memoryview(header(size=3)), memoryview(b"abc")])
    assert frame is not None and bytes(frame.payload) == b"abc"


@pytest.mark.parametrize(
    "raw, kind",
    [
        (b"not json", "bad-header"),
        (b"", "bad-header"),
        (b"[1, 2]", "bad-header"),
        (b'"hidra"', "bad-header"),
        (b"\xff\xfe{}", "bad-header"),
        (b'{"hidra":1,"kind":"data","size":NaN}', "bad-header"),
        (header(hidra=_DROP), "bad-header"),
        (header(hidra=True), "bad-header"),
        (header(hidra=1.0), "bad-header"),
        (header(hidra="1"), "bad-header"),
        (header(hidra=2), "wrong-version"),
        (header(hidra=0), "wrong-version"),
        (header(kind="image"), "bad-header"),
        (header(kind=_DROP), "bad-header"),
        (header(kind=1), "bad-header"),
        (header(id=-1), "bad-header"),
        (header(series=-3), "bad-header"),
        (header(frame=-1), "bad-header"),
        (header(created_ns=-5), "bad-header"),
        (header(size=-1), "bad-header"),
        (header(size=_DROP), "bad-header"),
        (header(size=False), "bad-header"),
        (header(size=4.0), "bad-header"),
        (header(id=1 << 63), "bad-header"),
        (header(shape=[1, -2]), "bad-header"),
        (header(shape=[1, True]), "bad-header"),
        (header(shape="1x2"), "bad-header"),
        (header(checksums={"xxh3": 1}), "bad-header"),
        (header(checksums=["xxh3"]), "bad-header"),
        (header(attributes={"a": None}), "bad-header"),
        (header(name="a\u0000b"), "bad-header"),
        (header(chunk=[0, 1, 0]), "bad-chunk"),
        (header(chunk={"index": 0, "count": 1}), "bad-chunk"),
        (header(chunk={"index": 1, "count": 1, "offset": 0}), "bad-chunk"),
        (header(chunk={"index": -1, "count": 1, "offset": 0}), "bad-chunk"),
        (header(chunk={"index": 0, "count": 0, "offset": 0}), "bad-chunk"),
        (header(chunk={"index": 0, "count": 1, "offset": -1}), "bad-chunk"),
        (header(chunk={"index": 0, "count": 1, "offset": 0, "x": "y"}), "bad-chunk"),
        (header(chunk={"index": 0.0, "count": 1, "offset": 0}), "bad-chunk"),
        (header(size=_DROP, chunk={"index": 2, "count": 1, "offset": 0}), "bad-chunk"),
        (b'{"hidra":1,"kind":"data","size":0,"pad":"' + b"x" * 65536 + b'"}', "oversized-header"),
    ],
)
def test_bad_headers_are_rejected_by_kind(raw: bytes, kind: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_header(raw)
    assert caught.value.kind == kind
    decoder = Decoder()
    assert decoder.feed([raw, b"payload"]) is None
    assert decoder.errors == {kind: 1}


def test_header_of_exactly_64_kib_is_accepted() -> None:
    base = header(size=0)
    raw = base[:-1] + b',"pad":"' + b"x" * (65536 - len(base) - 9) + b'"}'
    assert len(raw) == 65536
    assert Decoder().feed([raw]) is not None


def test_unknown_keys_and_non_string_optional_fields_are_ignored() -> None:
    frame = Decoder().feed([header(name=5, content_type=[], encoding=None, dtype=3, extra={"a": 1})])
    assert frame is not None
    assert frame.name == "" and frame.content_type == "application/octet-stream"
    assert frame.encoding == "raw" and frame.dtype is None


def test_size_mismatch_of_unchunked_frames() -> None:
    decoder = Decoder()
    assert decoder.feed([header(size=5), b"abcd"]) is None
    assert decoder.feed([header(size=3), b"ab", b"cd"]) is None
    assert decoder.feed([header(size=1)]) is None
    assert decoder.errors == {"bad-size": 3}
    assert decoder.feed([header(size=4), b"ab", b"cd"]) is not None


def test_max_message() -> None:
    decoder = Decoder(max_message=10)
    assert decoder.feed([header(size=11), b"x" * 11]) is None
    assert feed_all(decoder, chunked(2, b"y" * 20, 8)) == []
    assert decoder.errors == {"oversized": 2}  # the frame's later chunks are not counted again
    assert decoder.feed([header(size=10), b"x" * 10]) is not None


def test_empty_message_is_ignored() -> None:
    decoder = Decoder()
    assert decoder.feed([]) is None
    assert decoder.errors == {}


# -- chunks


DATA = bytes(range(256)) * 40  # 10240 bytes


def test_reassembles_chunks_in_order() -> None:
    decoder = Decoder()
    frames = feed_all(decoder, chunked(7, DATA, 4096))
    assert len(frames) == 1
    assert bytes(frames[0].payload) == DATA and frames[0].size == len(DATA)
    assert frames[0].header["chunk"] == {"index": 0, "count": 3, "offset": 0}
    assert len(frames[0].parts) == 3
    assert decoder.errors == {} and not decoder.assembling


def test_chunk_bytes_may_come_in_several_parts() -> None:
    messages = chunked(7, DATA, 4096)
    split = [[m[0], m[1][:100], b"", m[1][100:]] for m in messages]
    frames = feed_all(Decoder(), split)
    assert len(frames) == 1 and bytes(frames[0].payload) == DATA


def test_single_chunk_frame() -> None:
    frames = feed_all(Decoder(), chunked(1, b"abc", 10))
    assert len(frames) == 1 and bytes(frames[0].payload) == b"abc"


def errors_after(messages: List[List[bytes]]) -> Tuple[List[int], Dict[str, int]]:
    decoder = Decoder()
    frames = feed_all(decoder, messages)
    decoder.finish()
    return [frame.id for frame in frames], decoder.errors


def test_missing_middle_chunk() -> None:
    a = chunked(1, DATA, 4096)
    assert errors_after([a[0], a[2]]) == ([], {"bad-chunk": 1})


def test_missing_first_chunk_counts_once() -> None:
    a = chunked(1, DATA, 2048)  # 5 chunks
    assert errors_after(a[1:]) == ([], {"bad-chunk": 1})


def test_missing_last_chunk_then_next_frame() -> None:
    a = chunked(1, DATA, 4096)
    b = chunked(2, DATA, 4096)
    assert errors_after(a[:2] + b) == ([2], {"bad-chunk": 1})


def test_unchunked_frame_ends_a_partial_frame() -> None:
    a = chunked(1, DATA, 4096)
    assert errors_after([a[0], [header(id=2, size=2), b"ok"], a[1], a[2]]) == ([2], {"bad-chunk": 1})


def test_interleaved_frames_both_lost() -> None:
    a = chunked(1, DATA, 4096)
    b = chunked(2, DATA, 4096)
    messages = [a[0], b[0], a[1], b[1], a[2], b[2]]
    assert errors_after(messages) == ([], {"bad-chunk": 2})


def test_first_chunk_not_at_offset_zero() -> None:
    messages = [[header(id=1, size=8, chunk={"index": 0, "count": 2, "offset": 4}), b"abcd"]]
    messages.append([header(id=1, size=8, chunk={"index": 1, "count": 2, "offset": 4}), b"efgh"])
    assert errors_after(messages) == ([], {"bad-chunk": 1})


def test_wrong_offset() -> None:
    messages = [
        [header(id=1, size=8, chunk={"index": 0, "count": 2, "offset": 0}), b"abcd"],
        [header(id=1, size=8, chunk={"index": 1, "count": 2, "offset": 5}), b"efg"],
    ]
    assert errors_after(messages) == ([], {"bad-chunk": 1})


@pytest.mark.parametrize(
    "second",
    [
        {"chunk": {"index": 2, "count": 3, "offset": 4}},  # skipped index
        {"chunk": {"index": 1, "count": 4, "offset": 4}},  # other count
        {"size": 9, "chunk": {"index": 1, "count": 3, "offset": 4}},  # other size
        {"kind": "series-start", "chunk": {"index": 1, "count": 3, "offset": 4}},  # other kind
    ],
)
def test_chunks_must_agree_with_the_first(second: Dict[str, Any]) -> None:
    fields: Dict[str, Any] = {"id": 1, "size": 12}
    fields.update(second)
    messages = [
        [header(id=1, size=12, chunk={"index": 0, "count": 3, "offset": 0}), b"abcd"],
        [header(**fields), b"efgh"],
        [header(id=1, size=12, chunk={"index": 2, "count": 3, "offset": 8}), b"ijkl"],
    ]
    assert errors_after(messages) == ([], {"bad-chunk": 1})


def test_chunk_bringing_too_many_bytes() -> None:
    messages = [
        [header(id=1, size=6, chunk={"index": 0, "count": 2, "offset": 0}), b"abcd"],
        [header(id=1, size=6, chunk={"index": 1, "count": 2, "offset": 4}), b"efgh"],
    ]
    assert errors_after(messages) == ([], {"bad-size": 1})


def test_last_chunk_with_bytes_missing() -> None:
    messages = [
        [header(id=1, size=10, chunk={"index": 0, "count": 2, "offset": 0}), b"abcd"],
        [header(id=1, size=10, chunk={"index": 1, "count": 2, "offset": 4}), b"efgh"],
    ]
    assert errors_after(messages) == ([], {"bad-size": 1})


def test_incomplete_when_finished() -> None:
    a = chunked(1, DATA, 4096)
    assert errors_after(a[:2]) == ([], {"incomplete": 1})


def test_restart_of_same_frame_discards_partial() -> None:
    a = chunked(1, DATA, 4096)
    assert errors_after([a[0], a[1]] + a) == ([1], {"bad-chunk": 1})


def test_lost_frame_chunks_not_counted_again_but_a_new_start_is_accepted() -> None:
    a = chunked(1, DATA, 2048)  # 5 chunks
    ids, errors = errors_after(a[2:] + a)
    assert ids == [1] and errors == {"bad-chunk": 1}


def test_malformed_corpus_exact_counts() -> None:
    """A stream mixing good frames and every kind of bad input: exact counters,
    every good frame delivered intact, and nothing raised."""
    good = chunked(10, DATA, 4096)
    corpus: List[List[Any]] = [
        [header(id=1, size=3), b"abc"],  # good
        [b"{"],  # bad-header
        [b"\x00\x01garbage", b"x"],  # bad-header
        [header(hidra=2, size=3), b"abc"],  # wrong-version
        [header(hidra=True, size=3), b"abc"],  # bad-header
        [header(kind="thumbnail", size=3), b"abc"],  # bad-header
        [header(id=-7, size=3), b"abc"],  # bad-header
        [b" " * 65537],  # oversized-header
        [header(size=3, chunk={"index": 0}), b"abc"],  # bad-chunk
        [header(id=2, size=4), b"abc"],  # bad-size
        good[0],
        good[1],
        good[2],  # frame 10: good
        good[0],
        good[2],  # frame 10 again, middle chunk lost: bad-chunk
        chunked(11, DATA, 4096)[1],  # start never seen: bad-chunk
        chunked(11, DATA, 4096)[2],  # same lost frame: not counted again
        [header(id=12, kind="series-end", size=0, attributes={"frames": "2"})],  # good
        good[0],  # left open at the end: incomplete
    ]
    decoder = Decoder()
    frames = feed_all(decoder, corpus)
    decoder.finish()
    assert [(f.id, f.kind) for f in frames] == [(1, "data"), (10, "data"), (12, "series-end")]
    assert bytes(frames[1].payload) == DATA
    assert decoder.errors == {
        "bad-header": 5,
        "wrong-version": 1,
        "oversized-header": 1,
        "bad-chunk": 3,
        "bad-size": 1,
        "incomplete": 1,
    }


