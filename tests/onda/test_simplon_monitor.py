"""OnDA Monitor's view of a simplon-monitor forward, end to end (127.0.0.1 only).

A fake detector control unit (a pyzmq PUSH socket, stream v1 JSON and stream v2
CBOR, written from /work/shared/protocols/eiger-stream.md) feeds the built
`hidra-run`, whose graph is `eiger-stream -> forward (simplon-monitor)`. The
images are compressed with the `bitshuffle` and `lz4` packages from PyPI, so
Hidra's own decoders are checked against independent encoders. A client that
does what OnDA Monitor's EIGER HTTP retrieval does (the sheet
/work/shared/protocols/simplon-monitor.md) reads them back: GET config/mode,
three PUTs that must answer exactly 200, then workers looping on images/next
(408 -> sleep), one TCP connection per request, each TIFF decoded with Pillow
and its ids and time read at offsets 42 and 162.

The binary is $HIDRA_RUN, or ../../.build/debug/hidra-run from here; the tests
are skipped when it does not exist. Every wait is bounded; processes are killed
when a test fails.
"""

from __future__ import annotations

import datetime
import http.client
import io
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import bitshuffle
import lz4.block
import numpy as np
import pytest
import zmq
from PIL import Image

HERE = Path(__file__).resolve().parent
HIDRA_RUN = Path(os.environ.get("HIDRA_RUN") or HERE / ".." / ".." / ".build" / "debug" / "hidra-run")
API = "/monitor/api/1.8.0"

pytestmark = pytest.mark.skipif(
    not os.access(HIDRA_RUN, os.X_OK), reason=f"hidra-run not built at {HIDRA_RUN} (set HIDRA_RUN)"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ---------------------------------------------------------------- the fake DCU


def bslz4(array: np.ndarray, header: bool = True) -> bytes:
    """Bitshuffle+LZ4 as an EIGER sends it: the HDF5 filter's 12-byte header
    (uncompressed bytes, block size in bytes; both big-endian), then the blocks."""
    block = 1024  # elements; EIGERs use bitshuffle's default, which Hidra also assumes without a header
    if not header:
        block = max(128, 8192 // array.dtype.itemsize // 8 * 8)
    body = bitshuffle.compress_lz4(np.ascontiguousarray(array).ravel(), block).tobytes()
    if not header:
        return body
    return struct.pack(">QI", array.nbytes, block * array.dtype.itemsize) + body


def v1_header(series: int, width: int, height: int, bits: int) -> List[bytes]:
    config = {
        "count_time": 0.001, "frame_time": 0.001, "nimages": 10, "ntrigger": 1,
        "x_pixels_in_detector": width, "y_pixels_in_detector": height, "bit_depth_image": bits,
    }
    return [
        json.dumps({"htype": "dheader-1.0", "series": series, "header_detail": "basic"}).encode(),
        json.dumps(config).encode(),
    ]


def v1_image(series: int, frame: int, array: np.ndarray, encoding: str, blob: bytes) -> List[bytes]:
    height, width = array.shape
    return [
        json.dumps({"htype": "dimage-1.0", "series": series, "frame": frame, "hash": ""}).encode(),
        json.dumps({
            "htype": "dimage_d-1.0", "shape": [width, height], "type": str(array.dtype),
            "encoding": encoding, "size": len(blob),
        }).encode(),
        blob,
        json.dumps({"htype": "dconfig-1.0", "start_time": 0, "stop_time": 1, "real_time": 1}).encode(),
    ]


def v1_end(series: int) -> List[bytes]:
    return [json.dumps({"htype": "dseries_end-1.0", "series": series}).encode()]


class CBOR:
    """Just enough CBOR (RFC 8949) for stream v2 messages."""

    def __init__(self) -> None:
        self.out = bytearray()

    def head(self, major: int, value: int) -> "CBOR":
        if value < 24:
            self.out.append(major << 5 | value)
        elif value < 1 << 8:
            self.out += bytes([major << 5 | 24, value])
        elif value < 1 << 16:
            self.out += bytes([major << 5 | 25]) + struct.pack(">H", value)
        elif value < 1 << 32:
            self.out += bytes([major << 5 | 26]) + struct.pack(">I", value)
        else:
            self.out += bytes([major << 5 | 27]) + struct.pack(">Q", value)
        return self

    def uint(self, value: int) -> "CBOR":
        return self.head(0, value)

    def bytes_(self, value: bytes) -> "CBOR":
        self.head(2, len(value))
        self.out += value
        return self

    def text(self, value: str) -> "CBOR":
        data = value.encode()
        self.head(3, len(data))
        self.out += data
        return self

    def array(self, count: int) -> "CBOR":
        return self.head(4, count)

    def map(self, count: int) -> "CBOR":
        return self.head(5, count)

    def tag(self, value: int) -> "CBOR":
        return self.head(6, value)


def v2_start(series: int, width: int, height: int, dtype: str) -> bytes:
    c = CBOR().tag(55799).map(5)
    c.text("type").text("start").text("series_id").uint(series)
    c.text("image_size_x").uint(width).text("image_size_y").uint(height).text("image_dtype").text(dtype)
    return bytes(c.out)


def v2_image(series: int, image: int, array: np.ndarray) -> bytes:
    """An image whose one channel is a tag-40 array over a DECTRIS tag-56500 bslz4 byte string."""
    height, width = array.shape
    typed = {np.dtype("uint16"): 69, np.dtype("uint32"): 70}[array.dtype]
    c = CBOR().tag(55799).map(4)
    c.text("type").text("image").text("series_id").uint(series).text("image_id").uint(image)
    c.text("data").map(1).text("threshold_1").tag(40).array(2).array(2).uint(height).uint(width)
    c.tag(typed).tag(56500).array(3).text("bslz4").uint(array.dtype.itemsize).bytes_(bslz4(array))
    return bytes(c.out)


def v2_end(series: int) -> bytes:
    return bytes(CBOR().tag(55799).map(2).text("type").text("end").text("series_id").uint(series).out)


def detector_image(series: int, frame: int, shape: Tuple[int, int], dtype: str) -> np.ndarray:
    """Detector-like counts with a few gap pixels (all bits set)."""
    rng = np.random.default_rng(series * 1000 + frame)
    array = rng.poisson(2.0, size=shape).astype(dtype)
    array[::97, ::13] = np.iinfo(array.dtype).max
    array[0, 1] = frame
    return array


class FakeDCU:
    def __init__(self) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.PUSH)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDTIMEO, 10000)
        self.port = free_port()
        self.socket.bind(f"tcp://127.0.0.1:{self.port}")

    def send(self, parts: List[bytes]) -> None:
        self.socket.send_multipart(parts)

    def close(self) -> None:
        self.socket.close()
        self.context.term()


# ---------------------------------------------------------------- hidra-run


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

    def stop(self, timeout: float = 20) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def output(self) -> str:
        return f"stdout:\n{self.stdout.read_text()}\nstderr:\n{self.stderr.read_text()}"


@pytest.fixture
def dcu() -> Iterator[FakeDCU]:
    fake = FakeDCU()
    yield fake
    fake.close()


@pytest.fixture
def monitor(tmp_path: Path, dcu: FakeDCU) -> Iterator[Tuple[Hidra, int]]:
    port = free_port()
    graph = f"""graph: onda-test
nodes:
  detector:
    type: eiger-stream
    endpoint: tcp://127.0.0.1:{dcu.port}
  onda:
    type: forward
    input: {{from: detector, delivery: latest, buffer: {{frames: 64}}}}
    format: simplon-monitor
    listen: http://127.0.0.1:{port}
"""
    hidra = Hidra(graph, tmp_path)
    yield hidra, port
    hidra.kill()


# ---------------------------------------------------------------- an OnDA-like client


def request(port: int, method: str, path: str, body: Optional[bytes] = None,
         headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, str], bytes]:
    """One request on its own TCP connection, as OnDA's requests are."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        connection.close()


def put_value(port: int, key: str, value: object) -> int:
    status, _, _ = request(port, "PUT", f"{API}/config/{key}", json.dumps({"value": value}).encode(),
                        {"Content-Type": "application/json"})
    return status


def onda_start(port: int, buffer_size: int, hidra: Hidra) -> None:
    """Liveness check on config/mode (retried while the server is not up), then OnDA's PUTs."""
    deadline = time.monotonic() + 30
    while True:
        try:
            status, _, body = request(port, "GET", f"{API}/config/mode")
            if status == 200:
                break
        except OSError:
            pass
        assert hidra.process.poll() is None, hidra.output()
        assert time.monotonic() < deadline, "the monitor never answered"
        time.sleep(0.1)
    assert json.loads(body)["value"] in ("enabled", "disabled")
    assert put_value(port, "mode", "enabled") == 200
    assert put_value(port, "discard_new", False) == 200
    assert put_value(port, "buffer_size", buffer_size) == 200


class Decoded:
    def __init__(self, body: bytes, headers: Dict[str, str]) -> None:
        assert int(headers["content-length"]) == len(body)
        # What OnDA reads besides the pixels.
        self.series, _, _, self.frame = struct.unpack("<iiii", body[42:58])
        self.time = body[162:191].decode("ascii")
        self.pixels = np.array(Image.open(io.BytesIO(body)))


def onda_worker(port: int, wanted: int, results: List[Decoded], lock: threading.Lock,
                problems: List[str]) -> None:
    """Waits for mode 'enabled', then loops on images/next until `wanted` images were taken (by all workers)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, _, body = request(port, "GET", f"{API}/config/mode")
        if status == 200 and json.loads(body)["value"] == "enabled":
            break
        time.sleep(0.05)
    while time.monotonic() < deadline:
        with lock:
            if len(results) >= wanted:
                return
        status, headers, body = request(port, "GET", f"{API}/images/next")
        if status == 408:
            time.sleep(0.05)  # OnDA sleeps 0.5 s
            continue
        if status != 200:
            problems.append(f"images/next: {status} {body[:200]!r}")
            return
        decoded = Decoded(body, headers)
        with lock:
            results.append(decoded)


def run_workers(port: int, wanted: int, workers: int = 2) -> List[Decoded]:
    results: List[Decoded] = []
    problems: List[str] = []
    lock = threading.Lock()
    threads = [threading.Thread(target=onda_worker, args=(port, wanted, results, lock, problems))
               for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=40)
    assert not problems, problems
    return results


def errors_of(hidra: Hidra, node: str) -> int:
    """The errors column of `node` in hidra-run's final summary."""
    text = hidra.stderr.read_text()
    summary = text.split("hidra: finished", 1)[1]
    row = next(line for line in summary.splitlines() if line.split()[:1] == [node])
    return int(row.split()[-2])


def check_time(text: str, sent_after: float) -> None:
    # Exactly OnDA's form: milliseconds and an offset with a colon.
    assert len(text) == 29 and text[19] == "." and text[23:] == "+00:00", text
    when = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    assert sent_after - 1 <= when <= time.time() + 1, (text, sent_after)


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("dtype, shape", [("uint32", (514, 1030)), ("uint16", (67, 45))])
def test_onda_reads_every_stream_v1_image_once(monitor: Tuple[Hidra, int], dcu: FakeDCU,
                                                dtype: str, shape: Tuple[int, int]) -> None:
    hidra, port = monitor
    onda_start(port, buffer_size=32, hidra=hidra)
    series = 4
    height, width = shape
    sent_at = time.time()
    images = {frame: detector_image(series, frame, shape, dtype) for frame in range(10)}
    dcu.send(v1_header(series, width, height, np.dtype(dtype).itemsize * 8))
    for frame, array in images.items():
        bits = array.dtype.itemsize * 8
        if frame % 3 == 2:
            blob, encoding = lz4.block.compress(array.tobytes(), store_size=False), "lz4<"
        else:
            # Most with the HDF5 header (as detectors send it), some without.
            blob, encoding = bslz4(array, header=frame % 3 == 0), f"bs{bits}-lz4<"
        dcu.send(v1_image(series, frame, array, encoding, blob))
    dcu.send(v1_end(series))

    results = run_workers(port, wanted=len(images))
    assert sorted(r.frame for r in results) == list(images), "each image exactly once"
    for result in results:
        assert result.series == series
        expected = images[result.frame]
        if dtype == "uint32":
            # PIL reads 32-bit samples as int32: gaps (0xFFFFFFFF) come out as -1, as OnDA sees them.
            assert result.pixels.dtype == np.int32
            assert np.array_equal(result.pixels.view(np.uint32), expected)
            assert (result.pixels[::97, ::13] == -1).all()
        else:
            assert result.pixels.dtype == np.uint16
            assert np.array_equal(result.pixels, expected)
        check_time(result.time, sent_at)
    status, _, _ = request(port, "GET", f"{API}/images/next")
    assert status == 408

    assert hidra.stop() == 0, hidra.output()
    with pytest.raises(OSError):
        request(port, "GET", f"{API}/config/mode")
    assert errors_of(hidra, "onda") == 0 and errors_of(hidra, "detector") == 0, hidra.output()


def test_onda_reads_stream_v2_cbor_images(monitor: Tuple[Hidra, int], dcu: FakeDCU) -> None:
    hidra, port = monitor
    onda_start(port, buffer_size=16, hidra=hidra)
    shape = (100, 77)
    images = {n: detector_image(8, n, shape, "uint32" if n % 2 else "uint16") for n in range(6)}
    sent_at = time.time()
    dcu.send([v2_start(8, shape[1], shape[0], "uint16")])
    for n, array in images.items():
        dcu.send([v2_image(8, n, array)])
    dcu.send([v2_end(8)])
    results = run_workers(port, wanted=len(images), workers=1)
    assert sorted(r.frame for r in results) == list(images)
    for result in results:
        expected = images[result.frame]
        assert result.series == 8
        assert np.array_equal(result.pixels.astype(np.int64) & 0xFFFFFFFF, expected.astype(np.int64))
        check_time(result.time, sent_at)
    assert hidra.stop() == 0, hidra.output()


def test_hostile_clients_are_answered_and_counted(monitor: Tuple[Hidra, int]) -> None:
    hidra, port = monitor
    onda_start(port, buffer_size=4, hidra=hidra)
    cases = [
        ("GET", "/index.html", None, 404),
        ("GET", "/monitor/api/1.6.0/images/next", None, 404),
        ("DELETE", f"{API}/config/mode", None, 405),
        ("PUT", f"{API}/config/mode", b"{not json", 400),
        ("PUT", f"{API}/config/buffer_size", b'{"value": "big"}', 400),
        ("PUT", f"{API}/config/mode", b"x" * (1 << 20), 413),
    ]
    for method, path, body, expected in cases:
        status, headers, _ = request(port, method, path, body)
        assert status == expected, (method, path, status)
        assert "content-length" in headers
    for garbage in [b"\x00\x01\x02 not http\r\n\r\n", os.urandom(4096)]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(garbage)
            answer = raw.recv(4096)
            assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
    status, _, body = request(port, "GET", f"{API}/status/state")
    assert status == 200 and json.loads(body)["value"] == "normal", "still serving"
    assert hidra.stop() == 0, hidra.output()
    # The final summary counts every bad request on the forward's row.
    assert errors_of(hidra, "onda") == len(cases) + 2, hidra.output()
