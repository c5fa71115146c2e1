"""End to end: the built hidra-run sends, a Receiver receives (127.0.0.1 only).

The binary is $HIDRA_RUN, or ../../.build/debug/hidra-run relative to this
directory; the tests are skipped when it does not exist. Every wait is bounded
and the process is killed when a test fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List, Tuple

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
        # The forward ends once the last frame is acknowledged.
        receiver.ack()
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


CONSUMER = """
import sys
from hidra_client import Receiver
endpoint, log = sys.argv[1], sys.argv[2]
with Receiver(endpoint, credit=8) as receiver, open(log, "a") as out:
    for frame in receiver:
        if frame.kind == "data":
            out.write(f"{frame.id} {int(verify_ok(frame))}\\n")
            out.flush()
"""


def run_consumer(endpoint: str, log: Path) -> subprocess.Popen:  # type: ignore[type-arg]
    script = CONSUMER.replace(
        "from hidra_client import Receiver",
        "from hidra_client import Receiver, verify_generated\n"
        "def verify_ok(frame):\n    return verify_generated(frame, seed=3)",
    )
    return subprocess.Popen([sys.executable, "-c", script, endpoint, str(log)])


def read_log(log: Path) -> List[Tuple[int, int]]:
    if not log.exists():
        return []
    return [tuple(map(int, line.split())) for line in log.read_text().splitlines() if line.strip()]  # type: ignore[misc]


def test_a_killed_consumer_loses_nothing(tmp_path: Path, hidra_factory: List[Hidra]) -> None:
    """A guaranteed push forward and a consumer killed (SIGKILL) mid-stream, then
    restarted: every frame arrives, and a frame arrives twice only if the killed
    consumer had not acknowledged it."""
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    generate = "    size: 20000\n    count: 400\n    rate: 400/s\n    seed: 3"
    hidra = Hidra(graph(port, "push", generate, "sum") + "\n    peer_timeout: 1s", tmp_path)
    hidra_factory.append(hidra)
    first_log = tmp_path / "first.txt"
    second_log = tmp_path / "second.txt"
    first = run_consumer(endpoint, first_log)
    deadline = time.monotonic() + 30
    while len(read_log(first_log)) < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    first.kill()
    first.wait(timeout=10)
    killed_after = read_log(first_log)
    assert len(killed_after) >= 100
    assert hidra.process.poll() is None, "the forward waits for what was not acknowledged"
    second = run_consumer(endpoint, second_log)
    try:
        status = hidra.wait(timeout=60)
    finally:
        if second.poll() is None:
            second.terminate()
            second.wait(timeout=10)
    assert status == 0, hidra.output()
    first_ids = [ident for ident, _ in killed_after]
    second_ids = [ident for ident, _ in read_log(second_log)]
    assert all(ok for _, ok in read_log(first_log) + read_log(second_log)), "every payload intact"
    assert len(set(first_ids)) == len(first_ids) and len(set(second_ids)) == len(second_ids)
    assert len(set(first_ids) | set(second_ids)) == 400, "no frame lost"
    again = set(first_ids) & set(second_ids)
    # Only what the killed consumer held unacknowledged comes again: at most its
    # credit (8) plus the frame it was working on.
    assert len(again) <= 9, sorted(again)


def test_request_gets_the_newest_frames(tmp_path: Path, hidra_factory: List[Hidra]) -> None:
    port = free_port()
    generate = "    size: 4000\n    count: 2000\n    rate: 500/s\n    seed: 5"
    hidra = Hidra(graph(port, "request", generate, "{from: sum, delivery: latest}"), tmp_path)
    hidra_factory.append(hidra)
    with Receiver(f"tcp://127.0.0.1:{port}", pattern="request") as receiver:
        data: List[Frame] = []
        deadline = time.monotonic() + 30
        while len(data) < 8 and time.monotonic() < deadline:
            frame = receiver.receive(timeout=1.0)
            if frame is not None and frame.kind == "data":
                assert verify_generated(frame, seed=5)
                data.append(frame)
                time.sleep(0.05)  # a slow consumer: newer frames pass meanwhile
    ids = [f.id for f in data]
    assert len(ids) == 8 and ids == sorted(ids) and len(set(ids)) == 8, ids
    assert ids[-1] - ids[0] > 7, "frames were skipped for newer ones"
    hidra.kill()
