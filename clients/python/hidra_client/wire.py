"""Decoding of Hidra's native wire protocol, version 1 (docs/wire.md).

Everything here works on plain lists of message parts (``bytes``,
``memoryview`` or anything with the buffer protocol, such as ``zmq.Frame``), so
it can be used and tested without a network. ``Receiver`` feeds it from a
ZeroMQ socket.

The checks are those of Hidra's own decoder (``Wire.decodeHeader``) and of its
``zmq`` source (``ZMQSource``), and the error kinds are the same counter names:

``oversized-header``
    a header part larger than ``max_header`` (64 KiB).
``bad-header``
    not a UTF-8 JSON object; no integer ``hidra`` key; unknown or missing
    ``kind``; ``id``, ``series``, ``frame``, ``created_ns`` or ``size`` not a
    non-negative integer (booleans and floats are not integers; ``size`` is
    required); ``shape`` not a list of non-negative integers; ``checksums`` or
    ``attributes`` not an object of strings; a NUL in ``name``.
``wrong-version``
    an integer ``hidra`` other than 1.
``bad-chunk``
    a malformed ``chunk`` object, or chunks that break the reassembly rule.
``bad-size``
    payload bytes that do not add up to ``size`` (unchunked frames, a chunk
    bringing more bytes than the frame has left, a last chunk with bytes
    missing).
``oversized``
    a frame whose ``size`` is larger than ``max_message`` (when set).
``incomplete``
    a chunked frame still being assembled when the receiver stops.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from .frame import KINDS, Buffer, Frame

#: The wire version this client speaks.
VERSION = 1
#: Largest header part accepted, in bytes.
MAX_HEADER_BYTES = 65_536
#: Largest JSON integer accepted (Hidra decodes integers as 64-bit signed).
_INT_MAX = (1 << 63) - 1
#: How many recently lost frames are remembered, so their remaining chunks are
#: dropped without counting the same loss again (as Hidra's receiver does).
LOST_MEMORY = 8
#: How many rejections of each kind are logged (all are counted).
LOG_FIRST = 5

log = logging.getLogger("hidra_client")


class DecodeError(ValueError):
    """Why a message was rejected; ``kind`` names the error counter."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class Chunk:
    """Where a chunk sits in its frame: ``0 <= index < count``, byte ``offset``."""

    index: int
    count: int
    offset: int


@dataclass
class Header:
    """A decoded header: the frame it announces, and its chunk if any."""

    frame: Frame
    chunk: Optional[Chunk]
    raw: Dict[str, Any]


def _integer(value: Any) -> Optional[int]:
    """A JSON integer, and nothing else (not a boolean, not a float)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    if value > _INT_MAX or value < -_INT_MAX - 1:
        return None
    return int(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")


def decode_header(part: Buffer, max_header: int = MAX_HEADER_BYTES) -> Header:
    """Decodes a header part; raises ``DecodeError`` for anything that is not a
    version-1 header of sane size and types. The returned frame has no payload."""
    data = memoryview(part).cast("B") if not isinstance(part, bytes) else part
    if len(data) > max_header:
        raise DecodeError("oversized-header", f"header of {len(data)} bytes")
    try:
        text = bytes(data).decode("utf-8")
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        obj = None
    if not isinstance(obj, dict):
        raise DecodeError("bad-header", "header is not a JSON object")
    version = _integer(obj.get("hidra"))
    if version is None:
        raise DecodeError("bad-header", "header has no 'hidra' version")
    if version != VERSION:
        raise DecodeError("wrong-version", f"wire version {version}, expected {VERSION}")
    kind = obj.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise DecodeError("bad-header", "unknown or missing 'kind'")

    def number(key: str, default: Optional[int] = 0) -> int:
        value = _integer(obj.get(key))
        if value is not None and value >= 0:
            return value
        if key not in obj and default is not None:
            return default
        raise DecodeError("bad-header", f"'{key}' must be a non-negative integer")

    def strings(key: str) -> Dict[str, str]:
        if key not in obj:
            return {}
        value = obj[key]
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise DecodeError("bad-header", f"'{key}' must map names to strings")
        return dict(value)

    ident = number("id")
    series = number("series")
    index = number("frame")
    name = obj.get("name")
    name = name if isinstance(name, str) else ""
    created = number("created_ns")
    content_type = obj.get("content_type")
    encoding = obj.get("encoding")
    shape: Optional[List[int]] = None
    if "shape" in obj:
        value = obj["shape"]
        dims = [_integer(d) for d in value] if isinstance(value, list) else None
        if dims is None or any(d is None or d < 0 for d in dims):
            raise DecodeError("bad-header", "'shape' must be a list of sizes")
        shape = [d for d in dims if d is not None]
    dtype = obj.get("dtype")
    checksums = strings("checksums")
    attributes = strings("attributes")
    if "\0" in name:
        raise DecodeError("bad-header", "'name' contains a NUL character")
    chunk: Optional[Chunk] = None
    if "chunk" in obj:
        chunk = _chunk(obj["chunk"])
    size = number("size", default=None)
    frame = Frame(
        kind=kind,
        id=ident,
        series=series,
        frame=index,
        name=name,
        created_ns=created,
        size=size,
        content_type=content_type if isinstance(content_type, str) else "application/octet-stream",
        encoding=encoding if isinstance(encoding, str) else "raw",
        shape=shape,
        dtype=dtype if isinstance(dtype, str) else None,
        checksums=checksums,
        attributes=attributes,
        header=obj,
    )
    return Header(frame=frame, chunk=chunk, raw=obj)


def _chunk(value: Any) -> Chunk:
    bad = DecodeError("bad-chunk", "'chunk' must be {index, count, offset} with 0 <= index < count")
    if not isinstance(value, dict):
        raise bad
    fields = {key: _integer(v) for key, v in value.items()}
    if any(v is None for v in fields.values()):
        raise bad
    index, count, offset = fields.get("index"), fields.get("count"), fields.get("offset")
    if index is None or count is None or offset is None:
        raise bad
    if count < 1 or index < 0 or index >= count or offset < 0:
        raise bad
    return Chunk(index=index, count=count, offset=offset)


def _view(part: Any) -> memoryview:
    """A byte view of a message part without copying (``zmq.Frame`` included)."""
    buffer = getattr(part, "buffer", None)  # zmq.Frame
    view = buffer if isinstance(buffer, memoryview) else memoryview(part)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


class _Partial:
    """A chunked frame whose first chunks have arrived."""

    def __init__(self, header: Header, count: int) -> None:
        self.header = header
        self.count = count
        self.parts: List[memoryview] = []
        self.received = 0
        self.next_index = 0


class Decoder:
    """Turns multipart messages into frames, reassembling chunks and counting
    every rejected message or lost frame in ``errors`` (never raising on bad
    input). One decoder per receiving socket.

    >>> decoder = Decoder()
    >>> frame = decoder.feed([header_bytes, payload_bytes])  # a Frame or None
    """

    def __init__(self, max_header: int = MAX_HEADER_BYTES, max_message: Optional[int] = None) -> None:
        self.max_header = max_header
        self.max_message = max_message
        #: Rejected messages and lost frames, by kind (see the module docs).
        self.errors: Dict[str, int] = {}
        self._partial: Optional[_Partial] = None
        self._lost: List[int] = []

    # -- counting

    def _error(self, kind: str, message: str) -> None:
        count = self.errors.get(kind, 0) + 1
        self.errors[kind] = count
        if count <= LOG_FIRST:
            suffix = " (further errors of this kind are counted, not logged)" if count == LOG_FIRST else ""
            log.warning("%s: %s%s", kind, message, suffix)

    def _remember(self, ident: int) -> None:
        if ident in self._lost:
            self._lost.remove(ident)
        if len(self._lost) >= LOST_MEMORY:
            self._lost.pop(0)
        self._lost.append(ident)

    def _give_up(self, open_: _Partial, reason: str, kind: str) -> None:
        frame = open_.header.frame
        self._error(
            kind,
            f"frame {frame.id} ('{frame.name}') discarded after {open_.received} of {frame.size} bytes: {reason}",
        )
        self._remember(frame.id)

    # -- decoding

    def feed(self, parts: Sequence[Any]) -> Optional[Frame]:
        """Handles one multipart message: returns the frame it completes, or
        None (a chunk of a frame still incomplete, or a rejected message, which
        is counted)."""
        if len(parts) == 0:
            return None
        try:
            header = decode_header(_view(parts[0]), self.max_header)
        except DecodeError as error:
            self._error(error.kind, f"message rejected: {error}")
            return None
        if header.chunk is not None:
            return self._feed_chunk(header, header.chunk, parts)
        frame = header.frame
        open_ = self._partial
        if open_ is not None:
            self._partial = None
            self._give_up(open_, f"its next chunk was expected, frame {frame.id} arrived", "bad-chunk")
        if self.max_message is not None and frame.size > self.max_message:
            self._error("oversized", f"frame {frame.id} of {frame.size} bytes is larger than {self.max_message}")
            return None
        payload = self._payload(parts)
        total = sum(len(p) for p in payload)
        if total != frame.size:
            self._error("bad-size", f"frame {frame.id} has {total} payload bytes, its header says {frame.size}")
            return None
        return self._complete(frame, payload)

    def _feed_chunk(self, header: Header, chunk: Chunk, parts: Sequence[Any]) -> Optional[Frame]:
        frame = header.frame
        ident = frame.id
        if chunk.index == 0:
            open_ = self._partial
            if open_ is not None:
                self._partial = None
                self._give_up(open_, f"frame {ident} started before it was complete", "bad-chunk")
            if ident in self._lost:
                self._lost.remove(ident)
            if self.max_message is not None and frame.size > self.max_message:
                self._error("oversized", f"frame {ident} of {frame.size} bytes is larger than {self.max_message}")
                self._remember(ident)
                return None
            if chunk.offset != 0:
                self._error("bad-chunk", f"frame {ident}: first chunk at offset {chunk.offset}")
                self._remember(ident)
                return None
            self._partial = _Partial(header, chunk.count)
        open_ = self._partial
        self._partial = None
        if open_ is None:
            # A frame whose start we never saw, or one already given up (not counted again).
            if ident not in self._lost:
                self._error("bad-chunk", f"frame {ident}: chunk {chunk.index} arrived without the chunks before it")
                self._remember(ident)
            return None
        first = open_.header.frame
        if (
            first.id != ident
            or chunk.index != open_.next_index
            or chunk.count != open_.count
            or chunk.offset != open_.received
            or frame.size != first.size
            or frame.kind != first.kind
        ):
            got = f"chunk {chunk.index}/{chunk.count} at offset {chunk.offset} of frame {ident}"
            expected = f"chunk {open_.next_index}/{open_.count} at offset {open_.received}"
            self._give_up(open_, f"expected {expected}, got {got}", "bad-chunk")
            if ident != first.id and ident not in self._lost:
                self._error("bad-chunk", f"frame {ident}: chunk {chunk.index} arrived without the chunks before it")
                self._remember(ident)
            return None
        payload = self._payload(parts)
        length = sum(len(p) for p in payload)
        if length > first.size - open_.received:
            self._give_up(open_, f"chunk {chunk.index} brings more bytes than the frame's size", "bad-size")
            return None
        open_.parts += payload
        open_.received += length
        open_.next_index += 1
        if chunk.index != chunk.count - 1:
            self._partial = open_
            return None
        if open_.received != first.size:
            self._give_up(open_, "its last chunk arrived with bytes missing", "bad-size")
            return None
        return self._complete(first, open_.parts)

    @staticmethod
    def _payload(parts: Sequence[Any]) -> List[memoryview]:
        """The payload parts (after the header) as views; empty parts left out."""
        views = [_view(part) for part in parts[1:]]
        return [view for view in views if len(view) > 0]

    @staticmethod
    def _complete(frame: Frame, payload: List[memoryview]) -> Frame:
        frame.parts = tuple(payload)
        if len(payload) == 1:
            frame.payload = payload[0]
        else:
            frame.payload = b"".join(payload)
        return frame

    @property
    def assembling(self) -> bool:
        """True while a chunked frame is partly received."""
        return self._partial is not None

    def finish(self) -> None:
        """Discards a frame still being assembled, counting it (``incomplete``).
        Call when the receiver stops."""
        open_ = self._partial
        self._partial = None
        if open_ is not None:
            frame = open_.header.frame
            self._error(
                "incomplete",
                f"frame {frame.id} ('{frame.name}') incomplete when the receiver stopped: "
                f"{open_.received} of {frame.size} bytes",
            )


__all__ = ["VERSION", "MAX_HEADER_BYTES", "Chunk", "DecodeError", "Decoder", "Header", "decode_header"]

