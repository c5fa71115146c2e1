"""A ZeroMQ receiver for frames sent by a Hidra ``forward`` (``format: native``)."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Dict, Iterator, Optional, Type

import zmq

from .frame import Frame
from .wire import MAX_HEADER_BYTES, Decoder

#: Messages ZeroMQ queues for this receiver per producer, as Hidra's ``zmq``
#: source does: ZeroMQ counts messages, not bytes.
DEFAULT_HIGH_WATER_MARK = 64
#: How long one blocking wait lasts before checking again (so Ctrl-C and
#: ``close()`` from a signal handler are noticed).
_POLL_SLICE_MS = 500


class Receiver:
    """Receives frames in Hidra's native wire protocol (docs/wire.md).

    ``pattern="pull"`` pairs with a ``pattern: push`` forward (each frame goes to
    one consumer, and the forward waits for slow consumers); ``pattern="sub"``
    with a ``pattern: pub`` forward (every subscriber gets every frame, but a
    subscriber that falls behind loses frames). ``bind=False`` connects to a
    forward that listens; ``bind=True`` listens for a forward that connects.

    Bad input never raises: each rejected message or lost frame is counted in
    ``errors`` by kind (``bad-header``, ``wrong-version``, ``oversized-header``,
    ``bad-chunk``, ``bad-size``, ``oversized``, ``incomplete``; see
    ``hidra_client.wire``) and the first few of each kind are logged on the
    ``hidra_client`` logger.

    Use it as a context manager and iterator::

        with Receiver("tcp://127.0.0.1:5610", pattern="sub") as receiver:
            for frame in receiver:
                ...

    Iteration ends when the receiver is closed. ``receive(timeout)`` waits for
    one frame at most ``timeout`` seconds and returns None on timeout.

    ``max_message`` (bytes, None for no limit) rejects frames announcing a larger
    ``size`` (``oversized``) and sets ``ZMQ_MAXMSGSIZE``: ZeroMQ then drops any
    single part larger than that and closes the connection it came on, without
    the receiver ever seeing it (docs/wire.md, "Limits and bad messages").

    Acknowledgements (guaranteed end-to-end delivery) are not part of wire
    version 1 yet: a frame is handed out once all of its bytes arrived, and
    nothing is sent back. A push consumer that dies loses the frames ZeroMQ had
    queued for it.
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
    ) -> None:
        if pattern not in ("pull", "sub"):
            raise ValueError(f"pattern must be 'pull' or 'sub', not {pattern!r}")
        self.endpoint = endpoint
        self.pattern = pattern
        self.bind = bind
        self._decoder = Decoder(max_header=max_header, max_message=max_message)
        self._context = context if context is not None else zmq.Context.instance()
        socket = self._context.socket(zmq.SUB if pattern == "sub" else zmq.PULL)
        try:
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.RCVHWM, high_water_mark)
            if max_message is not None:
                socket.setsockopt(zmq.MAXMSGSIZE, max_message)
            if pattern == "sub":
                socket.setsockopt(zmq.SUBSCRIBE, b"")
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
        return self._decoder.errors

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
        limit) passed without one, or the receiver is closed."""
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            socket = self._socket
            if socket is None:
                return None
            try:
                parts = socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                parts = None
            except zmq.ZMQError:
                if self._socket is None:  # closed meanwhile
                    return None
                raise
            if parts is not None:
                frame = self._decoder.feed(parts)
                if frame is not None:
                    self.frames_received += 1
                    return frame
                continue
            if deadline is None:
                wait_ms = _POLL_SLICE_MS
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                wait_ms = max(1, min(_POLL_SLICE_MS, int(remaining * 1000)))
            try:
                socket.poll(wait_ms, zmq.POLLIN)
            except zmq.ZMQError:
                if self._socket is None:
                    return None
                raise

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.receive()
            if frame is None:
                return
            yield frame

    # -- closing

    def close(self) -> None:
        """Closes the socket; a chunked frame still being assembled is counted
        as ``incomplete``. Closing twice is harmless."""
        socket = self._socket
        if socket is None:
            return
        self._socket = None
        self._decoder.finish()
        socket.close(0)

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
