"""The frame a receiver hands out: metadata from the header, plus the payload."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

#: The kinds of frame a version-1 header may announce.
KINDS: Tuple[str, ...] = ("series-start", "data", "series-end")

#: Payload bytes: a zero-copy view of a received ZeroMQ part, or joined bytes.
Buffer = Union[bytes, memoryview]


@dataclass
class Frame:
    """One frame received in Hidra's native wire protocol (docs/wire.md).

    ``payload`` is a ``memoryview`` over the received ZeroMQ part when the frame
    came as one non-empty payload part (zero-copy: it keeps the part alive), and
    ``bytes`` when it came in several parts or chunks (joined once, on
    reassembly) or has no payload. ``parts`` always holds the received parts
    themselves, in order and without copying, for callers that want to avoid
    the join.

    ``header`` is the decoded JSON header as received (for a chunked frame, the
    header of its first chunk, including its ``chunk`` object); unknown keys
    are kept there.
    """

    kind: str
    id: int
    series: int
    frame: int
    name: str
    created_ns: int
    size: int
    content_type: str = "application/octet-stream"
    encoding: str = "raw"
    shape: Optional[List[int]] = None
    dtype: Optional[str] = None
    checksums: Dict[str, str] = field(default_factory=dict)
    attributes: Dict[str, str] = field(default_factory=dict)
    payload: Buffer = b""
    header: Dict[str, Any] = field(default_factory=dict, repr=False)
    parts: Tuple[Buffer, ...] = field(default=(), repr=False)

    @property
    def is_control(self) -> bool:
        """True for ``series-start`` and ``series-end`` frames."""
        return self.kind != "data"

    def tobytes(self) -> bytes:
        """The payload as ``bytes`` (copies when it is a view)."""
        return bytes(self.payload)
