"""End to end: the built hidra-run sends, a Receiver receives (127.0.0.1 only).

The binary is $HIDRA_RUN, or ../../.build/debug/hidra-run relative to this
directory; the tests are skipped when it does not exist. Every wait is bounded
and the process is killed when a test fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator, List

import pytest

from hidra_client import Frame, Receiver, verify_generated

HERE = Path(__file__).resolve().parent
HIDRA_RUN = Path(os.environ.get("HIDRA_RUN") or HERE / ".." / ".." / ".." / ".build" / "debug" / "hidra-run")

pytestmark = pytest.mark.skipif(
    not os.access(HIDRA_RUN, os.X_OK), reason=f"hidra-run not built at {HIDRA_RUN} (set HIDRA_RUN)"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Hidra:
    """A running hidra-run, its output captured in files (a full pipe never blocks it)."""

    def __init__(self, graph: str, directory: Path) -> None:
        self.path = directory / "graph.yaml"
        self.path.write_text(graph)
        self.stdout = directory / "stdout.txt"
        self.stderr = directory / "stderr.txt"
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.process = subprocess.Popen(
                [str(HIDRA_RUN), str(self.path)], stdout=out, stderr=err, stdin=subprocess.DEVNULL
            )

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def output(self) -> str:
        return f"stdout:\n{self.stdout.read_text()}\nstderr:\n{self.stderr.read_text()}"


@pytest.fixture
def hidra_factory(tmp_path: Path) -> Iterator[List[Hidra]]:
    started: List[Hidra] = []
    yield started
    for hidra in started:
        hidra.kill()


def graph(port: int, pattern: str, generate: str, edge: str) -> str:
    return f"""graph: python-client
nodes:
  gen:
    type: generate
{generate}
  sum:
    type: checksum
    input: gen
    algorithms: [xxh3]
  out:
    type: forward
    input: {edge}
    format: native
    pattern: {pattern}
    listen: tcp://127.0.0.1:{port}
    chunk_size: 4096"""


def test_push_pull_delivers_every_frame_intact(tmp_path: Path, hidra_factory: List[Hidra]) -> None:
    port = free_port()
    generate = "    size: 10000\n    count: 50\n    frames_per_series: 10\n    seed: 7"
    # Connect first (ZeroMQ retries until hidra-run listens). hidra-run waits at
    # exit until ZeroMQ has sent what the forward handed it (up to a 5 s linger).
    with Receiver(f"tcp://127.0.0.1:{port}", pattern="pull") as receiver:
        hidra = Hidra(graph(port, "push", generate, "sum"), tmp_path)
        hidra_factory.append(hidra)
        frames: List[Frame] = []
        deadline = time.monotonic() + 30
        while len(frames) < 60 and time.monotonic() < deadline:
            frame = receiver.receive(timeout=0.5)
            if frame is not None:
                frames.append(frame)
            elif hidra.process.poll() is not None:
                break  # exited, and nothing more came for half a second
        status = hidra.wait(timeout=20)
        assert status == 0, hidra.output()
        assert receiver.receive(timeout=0.2) is None
        receiver.close()
        assert receiver.errors == {}

    data = [f for f in frames if f.kind == "data"]
    starts = [f for f in frames if f.kind == "series-start"]
    ends = [f for f in frames if f.kind == "series-end"]
    assert (len(data), len(starts), len(ends)) == (50, 5, 5), hidra.output()
    for frame in data:
        assert frame.size == 10000 and len(frame.payload) == 10000
        assert verify_generated(frame, seed=7), (frame.series, frame.frame)
        assert len(frame.checksums.get("xxh3", "")) == 16
        assert frame.header["chunk"]["count"] == 3
    assert [(f.series, f.frame) for f in data] == [(s, i) for s in range(1, 6) for i in range(10)]
    assert [f.series for f in starts] == [1, 2, 3, 4, 5]
    assert all(f.attributes.get("frames") == "10" for f in ends)
    ids = [f.id for f in frames]
    assert ids == sorted(ids) and len(set(ids)) == 60


def test_pub_sub_delivers_frames_to_a_subscriber(tmp_path: Path, hidra_factory: List[Hidra]) -> None:
    port = free_port()
    generate = "    size: 10000\n    count: 150\n    rate: 50/s\n    frames_per_series: 25\n    seed: 3"
    edge = "{from: sum, delivery: latest, buffer: {frames: 4}}"
    with Receiver(f"tcp://127.0.0.1:{port}", pattern="sub") as receiver:
        hidra = Hidra(graph(port, "pub", generate, edge), tmp_path)
        hidra_factory.append(hidra)
        frames: List[Frame] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            frame = receiver.receive(timeout=0.5)
            if frame is not None:
                frames.append(frame)
            elif hidra.process.poll() is not None:
                break  # exited, and nothing more came for half a second
        status = hidra.wait(timeout=20)
        assert status == 0, hidra.output()

    data = [f for f in frames if f.kind == "data"]
    assert len(data) >= 20, (len(data), receiver.errors, hidra.output())
    assert all(verify_generated(f, seed=3) for f in data)
    # pub may lose messages, but never hands out a damaged frame.
    assert set(receiver.errors) <= {"bad-chunk", "incomplete"}
