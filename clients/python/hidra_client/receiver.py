"""A ZeroMQ receiver for frames sent by a Hidra ``forward`` (``format: native``)."""

from __future__ import annotations

import json
import secrets
import time
from collections import OrderedDict
from types import TracebackType
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple, Type

import zmq

from .frame import Frame
from .wire import MAX_HEADER_BYTES, VERSION as WIRE_VERSION, Decoder

#: Messages ZeroMQ queues for this receiver per producer, as Hidra's ``zmq``
#: source does: ZeroMQ counts messages, not bytes.
DEFAULT_HIGH_WATER_MARK = 64
#: How long one blocking wait lasts before checking again (so Ctrl-C and
#: ``close()`` from a signal handler are noticed).
_POLL_SLICE_MS = 500
#: An acknowledging receiver says it is alive this often while it waits (the
#: forward forgets consumers silent for its ``peer_timeout``).
_KEEPALIVE_MS = 250
#: Frames a push forward may send ahead of this receiver's acknowledgements.
DEFAULT_CREDIT = 16
#: The largest credit a forward accepts.
MAX_CREDIT = 4096
#: How many frame ids a receiver remembers to drop resent copies.
_RECENT_MEMORY = 8192


class Receiver:
    """Receives frames in Hidra's native wire protocol (docs/wire.md).

    ``pattern="pull"`` pairs with a ``pattern: push`` forward: each frame goes
    to one consumer, which **acknowledges** it (docs/wire.md,
    "Acknowledgements"). By default a frame is acknowledged when the next one is
    asked for (the loop body has finished with it) and when the receiver is
    closed; with ``auto_ack=False`` call ``ack()``. Frames a consumer did not
    acknowledge when it died or went silent are resent to other consumers (or
    to this program once restarted): delivery is at least once, and this
    receiver never hands out a frame twice. ``credit`` is how many frames the
    forward may send ahead of the acknowledgements. ``acknowledge=False`` reads
    from a forward with ``acknowledge: false`` (plain PUSH/PULL, no resending).

    ``pattern="request"`` pairs with ``pattern: request``: each ``receive``
    asks for the newest frame. ``pattern="sub"`` pairs with ``pattern: pub``:
    every subscriber gets every frame, but one that falls behind loses frames.
    ``bind=False`` connects to a forward that listens; ``bind=True`` listens for
    forwards that connect.

    Bad input never raises: each rejected message or lost frame is counted in
    ``errors`` by kind (``bad-header``, ``wrong-version``, ``oversized-header``,
    ``bad-chunk``, ``bad-size``, ``oversized``, ``incomplete``; see
    ``hidra_client.wire``) and the first few of each kind are logged on the
    ``hidra_client`` logger.

    Use it as a context manager and iterator::

        with Receiver("tcp://127.0.0.1:5610") as receiver:
            for frame in receiver:
                ...

    Iteration ends when the receiver is closed. ``receive(timeout)`` waits for
    one frame at most ``timeout`` seconds and returns None on timeout.

    ``max_message`` (bytes, None for no limit) rejects frames announcing a larger
    ``size`` (``oversized``) and sets ``ZMQ_MAXMSGSIZE``: ZeroMQ then drops any
    single part larger than that and closes the connection it came on, without
    the receiver ever seeing it (docs/wire.md, "Limits and bad messages").
    """

    def __init__(
        self,
        endpoint: str,
        pattern: str = "pull",
        bind: bool = False,
        max_header: int = MAX_HEADER_BYTES,
        max_message: Optional[int] = None,
        high_water_mark: int = DEFAULT_HIGH_WATER_MARK,
        context: Optional[zmq.Context] = None,  # type: ignore[type-arg]
        credit: int = DEFAULT_CREDIT,
        auto_ack: bool = True,
        acknowledge: bool = True,
    ) -> None:
        if pattern not in ("pull", "sub", "request"):
            raise ValueError(f"pattern must be 'pull', 'sub' or 'request', not {pattern!r}")
        if not 1 <= credit <= MAX_CREDIT:
            raise ValueError(f"credit must be from 1 to {MAX_CREDIT}, not {credit}")
        self.endpoint = endpoint
        self.pattern = pattern
        self.bind = bind
        self.credit = credit
        self.auto_ack = auto_ack
        #: Whether this receiver talks back to the forward (pull with
        #: acknowledgements, or request).
        self.acknowledging = pattern == "request" or (pattern == "pull" and acknowledge)
        self._router = bind and self.acknowledging
        self._max_header = max_header
        self._max_message = max_message
        self._decoders: Dict[bytes, Decoder] = {}
        self._session = secrets.token_hex(8)
        self._forwards: Set[bytes] = set() if self._router or not self.acknowledging else {b""}
        self._unacked: List[Tuple[bytes, int]] = []
        # Frames handed out lately, by id and creation time (ids start again when
        # the sending Hidra restarts), to drop resent copies.
        self._recent: "OrderedDict[Tuple[int, int], None]" = OrderedDict()
        self._next_keepalive = 0.0
        self._asked = False
        #: Frames dropped because this receiver had handed them out already.
        self.duplicates = 0
        self._context = context if context is not None else zmq.Context.instance()
        if pattern == "sub":
            kind = zmq.SUB
        elif not self.acknowledging:
            kind = zmq.PULL
        else:
            kind = zmq.ROUTER if self._router else zmq.DEALER
        socket = self._context.socket(kind)
        try:
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.RCVHWM, high_water_mark)
            if max_message is not None:
                socket.setsockopt(zmq.MAXMSGSIZE, max_message)
            if pattern == "sub":
                socket.setsockopt(zmq.SUBSCRIBE, b"")
            if self._router:
                socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
            if bind:
                socket.bind(endpoint)
            else:
                socket.connect(endpoint)
        except BaseException:
            socket.close(0)
            raise
        self._socket: Optional[zmq.Socket] = socket  # type: ignore[type-arg]
        #: Frames handed out so far.
        self.frames_received = 0

    # -- state

    @property
    def errors(self) -> Dict[str, int]:
        """Rejected messages and lost frames so far, by kind."""
        total: Dict[str, int] = {}
        for decoder in self._decoders.values():
            for kind, count in decoder.errors.items():
                total[kind] = total.get(kind, 0) + count
        return total

    @property
    def closed(self) -> bool:
        return self._socket is None

    @property
    def last_endpoint(self) -> Optional[str]:
        """The endpoint actually bound (useful with ``tcp://127.0.0.1:*``), when bound."""
        if self._socket is None or not self.bind:
            return None
        value = self._socket.getsockopt(zmq.LAST_ENDPOINT)
        return value.decode() if isinstance(value, bytes) else str(value)

    # -- receiving

    def receive(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The next complete frame, or None when ``timeout`` seconds (None: no
        limit) passed without one, or the receiver is closed. Acknowledges the
        frames handed out before (with ``auto_ack``)."""
        if self.auto_ack:
            self.ack()
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            socket = self._socket
            if socket is None:
                return None
            self._keep_alive()
            if self.pattern == "request" and not self._asked and self._forwards:
                for forward in list(self._forwards):
                    self._send(forward, {"type": "next"})
                self._asked = True
            try:
                parts = socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                parts = None
            except zmq.ZMQError:
                if self._socket is None:  # closed meanwhile
                    return None
                raise
            if parts is not None:
                frame = self._accept(parts)
                if frame is not None:
                    self.frames_received += 1
                    return frame
                continue
            slice_ms = _POLL_SLICE_MS if not self.acknowledging else _KEEPALIVE_MS
            if deadline is None:
                wait_ms = slice_ms
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                wait_ms = max(1, min(slice_ms, int(remaining * 1000)))
            try:
                socket.poll(wait_ms, zmq.POLLIN)
            except zmq.ZMQError:
                if self._socket is None:
                    return None
                raise

    def ack(self, failed: bool = False) -> None:
        """Acknowledges every frame handed out so far. ``failed=True`` tells the
        forward this consumer could not take them: they count as not delivered
        (their source keeps them) and are not resent."""
        if not self._unacked:
            return
        by_forward: Dict[bytes, List[int]] = {}
        for forward, seq in self._unacked:
            by_forward.setdefault(forward, []).append(seq)
        self._unacked = []
        for forward, seqs in by_forward.items():
            self._send(forward, {"type": "ack", "seqs": [], "failed": seqs} if failed else {"type": "ack", "seqs": seqs})

    def _accept(self, parts: Sequence[Any]) -> Optional[Frame]:
        forward = b""
        if self._router:
            if len(parts) < 2:
                return None
            forward = bytes(parts[0])
            parts = parts[1:]
            if forward not in self._forwards:
                self._forwards.add(forward)
                if self.pattern == "pull":
                    self._send(forward, {"type": "ready", "credit": self.credit, "session": self._session})
            if len(parts) == 1 and len(parts[0]) == 0:
                return None  # a connection probe
        decoder = self._decoders.get(forward)
        if decoder is None:
            decoder = Decoder(max_header=self._max_header, max_message=self._max_message)
            self._decoders[forward] = decoder
        frame = decoder.feed(parts)
        if frame is None or frame.kind != "data":
            return frame
        if self.pattern == "request":
            self._asked = False
        seq = frame.header.get("seq")
        if self.pattern == "pull" and self.acknowledging and isinstance(seq, int):
            self._unacked.append((forward, seq))
        key = (frame.id, frame.created_ns)
        if key in self._recent:
            self.duplicates += 1
            return None  # acknowledged with the others: it was handled already
        self._recent[key] = None
        if len(self._recent) > _RECENT_MEMORY:
            self._recent.popitem(last=False)
        return frame

    def _keep_alive(self) -> None:
        if not self.acknowledging or time.monotonic() < self._next_keepalive:
            return
        self._next_keepalive = time.monotonic() + 1.0
        # A request still unanswered is asked again: a forward that restarted
        # meanwhile has forgotten it (asking twice is harmless).
        message: Dict[str, Any]
        if self.pattern == "pull":
            message = {"type": "ready", "credit": self.credit, "session": self._session}
        else:
            message = {"type": "next" if self._asked else "heartbeat"}
        for forward in list(self._forwards):
            self._send(forward, message)

    def _send(self, forward: bytes, message: Dict[str, Any]) -> None:
        socket = self._socket
        if socket is None:
            return
        body = json.dumps({"hidra": WIRE_VERSION, **message}, separators=(",", ":")).encode()
        try:
            if self._router:
                socket.send_multipart([forward, body], zmq.NOBLOCK)
            else:
                socket.send(body, zmq.NOBLOCK)
        except zmq.Again:
            pass  # not connected yet, or its queue is full: the next keep-alive
        except zmq.ZMQError:
            self._forwards.discard(forward)  # a forward that disconnected

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.receive()
            if frame is None:
                return
            yield frame

    # -- closing

    def close(self) -> None:
        """Acknowledges (with ``auto_ack``), says bye so a forward resends at once
        what it had sent ahead to this consumer, and closes the socket; a
        chunked frame still being assembled is counted as ``incomplete``.
        Closing twice is harmless."""
        socket = self._socket
        if socket is None:
            return
        if self.acknowledging:
            if self.auto_ack:
                self.ack()
            for forward in list(self._forwards):
                self._send(forward, {"type": "bye"})
        self._socket = None
        for decoder in self._decoders.values():
            decoder.finish()
        socket.close(1000 if self.acknowledging else 0)

    def __enter__(self) -> "Receiver":
        return self

    def __exit__(
        self,
        kind: Optional[Type[BaseException]],
        value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("bound" if self.bind else "connected")
        return f"Receiver({self.endpoint!r}, pattern={self.pattern!r}, {state}, errors={self.errors})"
