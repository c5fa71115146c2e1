"""Python client for Hidra's native wire protocol (version 1, docs/wire.md).

>>> from hidra_client import Receiver
>>> with Receiver("tcp://127.0.0.1:5610", pattern="sub") as receiver:
...     for frame in receiver:
...         print(frame.kind, frame.series, frame.frame, frame.size)
"""

from .frame import KINDS, Buffer, Frame
from .generated import generated_content, generated_pattern, verify_generated
from .receiver import Receiver
from .wire import MAX_HEADER_BYTES, VERSION, DecodeError, Decoder, decode_header

__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "MAX_HEADER_BYTES",
    "VERSION",
    "Buffer",
    "DecodeError",
    "Decoder",
    "Frame",
    "Receiver",
    "decode_header",
    "generated_content",
    "generated_pattern",
    "verify_generated",
]
