"""verify_generated: Hidra's GeneratedContent, reimplemented."""

from __future__ import annotations

import struct

from hidra_client import Frame, generated_content, generated_pattern, verify_generated
from hidra_client.generated import splitmix64


def data_frame(payload: bytes, series: int, index: int) -> Frame:
    return Frame(kind="data", id=1, series=series, frame=index, name="", created_ns=0, size=len(payload), payload=payload)


def test_splitmix64_reference_values() -> None:
    # The published outputs of SplitMix64 seeded with 0.
    state, first = splitmix64(0)
    _, second = splitmix64(state)
    assert (first, second) == (0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4)


def test_pattern_is_little_endian_words_cut_to_size() -> None:
    pattern = generated_pattern(0, 13)
    assert len(pattern) == 13
    assert pattern[:8] == struct.pack("<Q", 0xE220A8397B1DCDAF)
    assert pattern[8:] == struct.pack("<Q", 0x6E789E6AA1B965F4)[:5]


def test_stamp_xors_series_and_frame() -> None:
    content = generated_content(7, 64, series=3, frame=5)
    pattern = generated_pattern(7, 64)
    assert content[16:] == pattern[16:]
    assert struct.unpack("<QQ", content[:16]) == tuple(
        a ^ b for a, b in zip(struct.unpack("<QQ", pattern[:16]), (3, 5))
    )


def test_verify_accepts_exact_content_and_rejects_changes() -> None:
    content = generated_content(7, 10000, series=2, frame=9)
    assert verify_generated(data_frame(content, 2, 9), seed=7)
    assert verify_generated(data_frame(content, 2, 9), seed=7)  # cached pattern
    assert not verify_generated(data_frame(content, 2, 8), seed=7)
    assert not verify_generated(data_frame(content, 3, 9), seed=7)
    assert not verify_generated(data_frame(content, 2, 9), seed=0)
    flipped = bytearray(content)
    flipped[9999] ^= 1
    assert not verify_generated(data_frame(bytes(flipped), 2, 9), seed=7)
    assert verify_generated(
        Frame(kind="data", id=1, series=2, frame=9, name="", created_ns=0, size=10000, payload=memoryview(content)),
        seed=7,
    )


def test_verify_rejects_size_mismatch_and_control_frames() -> None:
    content = generated_content(0, 100, series=1, frame=0)
    frame = data_frame(content, 1, 0)
    frame.size = 101
    assert not verify_generated(frame)
    frame = data_frame(content, 1, 0)
    frame.kind = "series-start"
    assert not verify_generated(frame)


def test_short_frames() -> None:
    for size in (1, 7, 8, 15, 16, 17):
        content = generated_content(1, size, series=4, frame=2)
        assert len(content) == size
        assert verify_generated(data_frame(content, 4, 2), seed=1)
