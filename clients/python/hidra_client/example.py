"""Prints one line per frame received from a Hidra forward.

    python -m hidra_client.example tcp://127.0.0.1:5610 --pattern sub

Each line: kind, series, frame, name, size and checksums (and, with
``--verify-seed``, whether the payload is what Hidra's ``generate`` makes).
Stops on Ctrl-C, after ``--count`` frames, or after ``--idle`` seconds without
a frame; then prints the error counters to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from .generated import verify_generated
from .receiver import Receiver


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hidra_client.example", description="Print frames received from a Hidra forward."
    )
    parser.add_argument("endpoint", help="ZeroMQ endpoint, e.g. tcp://127.0.0.1:5610")
    parser.add_argument(
        "--pattern",
        choices=["pull", "sub", "request"],
        default="pull",
        help="pull (from push, acknowledged), sub (from pub) or request (from request: newest frame)",
    )
    parser.add_argument("--bind", action="store_true", help="listen on the endpoint instead of connecting")
    parser.add_argument("--count", type=int, default=None, help="stop after this many frames")
    parser.add_argument("--idle", type=float, default=None, help="stop after this many seconds without a frame")
    parser.add_argument(
        "--verify-seed", type=int, default=None, metavar="SEED", help="verify data frames made by generate with SEED"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")

    received = 0
    with Receiver(args.endpoint, pattern=args.pattern, bind=args.bind) as receiver:
        try:
            while args.count is None or received < args.count:
                frame = receiver.receive(timeout=args.idle)
                if frame is None:
                    break
                received += 1
                checksums = ",".join(f"{k}:{v}" for k, v in sorted(frame.checksums.items())) or "-"
                line = f"{frame.kind:<12} series={frame.series} frame={frame.frame} name={frame.name} size={frame.size} checksums={checksums}"
                if args.verify_seed is not None and frame.kind == "data":
                    line += " verified" if verify_generated(frame, seed=args.verify_seed) else " MISMATCH"
                print(line, flush=True)
        except KeyboardInterrupt:
            pass
        receiver.close()
        errors = ", ".join(f"{k}={v}" for k, v in sorted(receiver.errors.items())) or "none"
        print(f"{received} frames, errors: {errors}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
