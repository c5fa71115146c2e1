"""Verification of frames made by Hidra's ``generate`` node.

``generate`` fills every data frame deterministically (Hidra's
``GeneratedContent``), so any consumer can check every byte:

1. a pattern of ``size`` bytes that depends only on the node's ``seed``: the
   outputs of SplitMix64 seeded with ``seed``, each written as 8 bytes
   little-endian, one after the other (the last one cut to fit);
2. its first 16 bytes XORed with the series number (bytes 0..7) and the frame
   number within the series (bytes 8..15), each 64-bit little-endian (cut when
   the frame is shorter than 16 bytes).

Series start at the node's ``first_series`` (1 by default) and frame numbers at 0
in each series; both travel in the header (``frame.series``, ``frame.frame``).
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import Any

from .frame import Frame

_MASK = (1 << 64) - 1


def splitmix64(state: int) -> "tuple[int, int]":
    """One SplitMix64 step: (the next state, the output)."""
    state = (state + 0x9E3779B97F4A7C15) & _MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return state, z ^ (z >> 31)


@lru_cache(maxsize=8)
def generated_pattern(seed: int, size: int) -> bytes:
    """The unstamped pattern of ``size`` bytes for ``seed`` (step 1 above)."""
    words = []
    state = seed & _MASK
    for _ in range((size + 7) // 8):
        state, value = splitmix64(state)
        words.append(value)
    return struct.pack(f"<{len(words)}Q", *words)[:size]


def _stamp(head: bytes, series: int, frame: int) -> bytes:
    key = struct.pack("<QQ", series & _MASK, frame & _MASK)
    return bytes(a ^ b for a, b in zip(head, key))


def generated_content(seed: int, size: int, series: int, frame: int) -> bytes:
    """The exact bytes ``generate`` makes for (series, frame)."""
    pattern = generated_pattern(seed, size)
    return _stamp(pattern[:16], series, frame) + pattern[16:]


def verify_generated(frame: Frame, seed: int = 0) -> bool:
    """True when ``frame`` is a data frame whose payload is exactly what Hidra's
    ``generate`` node with this ``seed`` makes for its series and frame number,
    and whose payload length equals its header's ``size``."""
    if frame.kind != "data":
        return False
    payload: Any = frame.payload
    view = memoryview(payload).cast("B") if not isinstance(payload, bytes) else memoryview(payload)
    size = len(view)
    if size != frame.size:
        return False
    pattern = generated_pattern(seed, size)
    head = min(16, size)
    if bytes(view[:head]) != _stamp(pattern[:head], frame.series, frame.frame):
        return False
    return view[head:] == pattern[head:]
