"""HiDRA Transfer API against the built hidra-run, spoken with plain pyzmq.

A graph watches a directory and serves it through a `hidra-transfer` forward;
the test registers as HiDRA 4.x's `hidra.Transfer` does (docs/hidra-compat.md),
writes files and reads them back. Only 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest
import zmq

HERE = Path(__file__).resolve().parent
HIDRA_RUN = Path(os.environ.get("HIDRA_RUN") or HERE / ".." / ".." / ".." / ".build" / "debug" / "hidra-run")

pytestmark = pytest.mark.skipif(
    not os.access(HIDRA_RUN, os.X_OK), reason=f"hidra-run not built at {HIDRA_RUN} (set HIDRA_RUN)"
)


def free_port_pair() -> int:
    """A free port whose next port is free too (signals, then requests)."""
    for _ in range(50):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port pair")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def signal_request(context: zmq.Context, port: int, frames: List[bytes], timeout: float = 1.0) -> Optional[List[bytes]]:
    """One signal on a fresh REQ connection, waiting `timeout` for the reply as the Transfer API does."""
    req = context.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    try:
        req.connect(f"tcp://127.0.0.1:{port}")
        req.send_multipart(frames)
        if req.poll(int(timeout * 1000)) == 0:
            return None
        return req.recv_multipart()
    finally:
        req.close()


def receive_file(data: zmq.Socket, timeout: float = 10.0) -> Optional[Tuple[Dict, bytes]]:
    """Chunks until the Transfer API's completion rule says the file is whole."""
    deadline = time.monotonic() + timeout
    metadata: Dict = {}
    content = b""
    expected = 0
    while time.monotonic() < deadline:
        if data.poll(50) == 0:
            continue
        parts = data.recv_multipart()
        assert len(parts) == 2
        chunk_metadata = json.loads(parts[0])
        assert chunk_metadata["chunk_number"] == expected, "chunks arrive in order, one file at a time"
        if expected > 0:
            assert chunk_metadata["filename"] == metadata["filename"]
        metadata = chunk_metadata
        content += parts[1]
        expected += 1
        size, chunk = metadata["chunksize"], metadata["chunk_number"]
        if len(parts[1]) < size or (metadata["filesize"] % size == 0 and metadata["filesize"] // size == chunk + 1):
            return metadata, content
    return None


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Tuple[int, Path]]:
    """hidra-run serving a watched directory through a hidra-transfer forward."""
    watch = tmp_path / "watch"
    watch.mkdir()
    port = free_port_pair()
    graph = tmp_path / "graph.yaml"
    graph.write_text(
        f"""graph: python-hidra-transfer
nodes:
  detector:
    type: directory
    path: {watch}
  hidra:
    type: forward
    input: detector
    format: hidra-transfer
    listen: tcp://127.0.0.1:{port}
    chunk_size: 64KiB
    allowed_hosts: [localhost, 127.0.0.1]
"""
    )
    with open(tmp_path / "stderr.txt", "wb") as err:
        process = subprocess.Popen([str(HIDRA_RUN), str(graph)], stdout=subprocess.DEVNULL, stderr=err)
    try:
        yield port, watch
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0, (tmp_path / "stderr.txt").read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_a_transfer_api_client_reads_files_and_gets_documented_replies(served: Tuple[int, Path]) -> None:
    port, watch = served
    context = zmq.Context()
    try:
        # The forward answers once hidra-run is up.
        deadline = time.monotonic() + 20
        reply = None
        while reply is None and time.monotonic() < deadline:
            reply = signal_request(context, port, [b"4.4.3", b"1", b"GET_VERSION", b"[]"])
        assert reply == [b"GET_VERSION", b"4.4.3"]

        data_port = free_port()
        targets = json.dumps([[f"localhost:{data_port}", 0, r".*\.bin$"]]).encode()
        appid = str(os.getpid()).encode()
        assert signal_request(context, port, [b"4.4.3", appid, b"START_STREAM", targets]) == [b"START_STREAM"]
        assert signal_request(context, port, [b"4.4.3", appid, b"GET_VERSION", targets]) == [b"GET_VERSION", b"4.4.3"]
        data = context.socket(zmq.PULL)
        data.setsockopt(zmq.LINGER, 0)
        data.bind(f"tcp://127.0.0.1:{data_port}")  # after the START, as the Transfer API does

        (watch / "sub").mkdir()
        content = os.urandom(200_000)
        (watch / "skip.txt").write_bytes(b"not matched")
        (watch / "sub" / "a.bin").write_bytes(content)
        received = receive_file(data)
        assert received is not None
        metadata, payload = received
        assert payload == content
        assert (metadata["relative_path"], metadata["filename"]) == ("sub", "a.bin")
        assert metadata["source_path"] == str(watch)
        assert metadata["filesize"] == 200_000 and metadata["chunksize"] == 65536
        assert metadata["confirmation_required"] is False

        # Hostile input gets its documented reply, and the server stays up.
        assert signal_request(context, port, [b"5.0.0", appid, b"START_STREAM", targets]) == [
            b"VERSION_CONFLICT",
            b"4.4.3",
        ]
        assert signal_request(context, port, [b"4.4.3", appid, b"START_STREAM"]) == [b"NO_VALID_SIGNAL"]
        assert signal_request(context, port, [b"4.4.3", appid, b"START_STREAM", b"[[oops"]) == [b"NO_VALID_SIGNAL"]
        far = json.dumps([["10.255.255.1:5000", 0, ".*"]]).encode()
        assert signal_request(context, port, [b"4.4.3", appid, b"START_STREAM", far]) == [b"NO_VALID_HOST"]
        assert signal_request(context, port, [b"4.4.3", appid, b"STOP_STREAM", targets]) == [b"STOP_STREAM"]
        assert signal_request(context, port, [b"4.4.3", appid, b"STOP_STREAM", targets]) == [
            b"NO_OPEN_CONNECTION_FOUND"
        ]
        data.close()
    finally:
        context.term()
