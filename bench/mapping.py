"""The mapping functions that run before each ACK, on the ~3 KB ORU^R01 of ``load.py``.

Run: ``python bench/mapping.py [iterations]``. For each of ``decode_message``,
``read_header``, ``check_oru`` and ``encode_message(build_ack(...))`` it prints the time
per message (best of 7 rounds), then the four in a row as the receiver runs them on each
message (a new decode, header and ACK every time).  Each is also given as a ratio
against a baseline measured in the same process, ``bytes.decode`` + ``str.split("\\r")``
of the same message, so that machine speed and load cancel out of the ratios: compare
ratios between runs and machines, not microseconds.

Then ``decode_message`` on reports of 10,000 to 160,000 short continuation lines (a text
OBX-5 broken by LF): the time per line should stay flat as the report grows (it grew with
the report while segments were rejoined by string concatenation).

Last, ``decode_message`` on frames of 4 and 16 MB holding bytes invalid in UTF-8, sparse
and dense, as a ratio to ``bytes.decode(errors="replace")`` of the same frame and to
``decode_message`` of the frame with each bad byte replaced by a valid character: near 1
against the latter for sparse ones, and flat as a dense frame grows (a Python error handler called once per bad
byte made a 15 MB dense frame take seconds).
"""

from __future__ import annotations

import sys
import timeit
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import load  # noqa: E402

from mappings.ack import build_ack, encode_message  # noqa: E402
from mappings.config import MappingConfig  # noqa: E402
from mappings.decoding import decode_message  # noqa: E402
from mappings.header import read_header  # noqa: E402
from mappings.inbound import check_oru  # noqa: E402


def best_us(fn: Callable[[], object], iterations: int, rounds: int = 7) -> float:
    return min(timeit.repeat(fn, number=iterations, repeat=rounds)) / iterations * 1e6


def main(iterations: int = 5000) -> None:
    raw = load.oru("BENCH1", 3072)
    config = MappingConfig()
    now = datetime.now(timezone.utc)
    decoded = decode_message(raw, "utf-8", normalise=True)
    header = read_header(decoded.text)

    def receiver_path() -> bytes:
        message = decode_message(raw, "utf-8", normalise=True)
        head = read_header(message.text)
        check_oru(message.text, config, head)
        return encode_message(build_ack(head, "AA", control_id="ACK1", now=now), message.charset)

    cases: dict[str, Callable[[], object]] = {
        "baseline (decode + split)": lambda: raw.decode("utf-8").split("\r"),
        "decode_message": lambda: decode_message(raw, "utf-8", normalise=True),
        "read_header": lambda: read_header(decoded.text),
        "check_oru": lambda: check_oru(decoded.text, config, header),
        "build_ack + encode": lambda: encode_message(
            build_ack(header, "AA", control_id="ACK1", now=now), decoded.charset),
        "all four, per message": receiver_path,
    }
    print(f"{len(raw)}-byte ORU^R01, best of 7 rounds of {iterations}")
    baseline = None
    for name, fn in cases.items():
        us = best_us(fn, iterations)
        baseline = baseline or us
        print(f"{name:28s} {us:7.2f} us  x{us / baseline:5.1f}")
    print("decode_message on continuation lines (time per line should stay flat):")
    head = b"MSH|^~\\&|A|F|R|RF|20240101||ORU^R01|LINES1|P|2.5\rOBX|1|TX|x||a"
    for lines in (10_000, 40_000, 160_000):
        report = head + b"\nline" * lines
        us = best_us(lambda: decode_message(report, "utf-8", normalise=True), 1, rounds=3)
        print(f"  {lines:7d} lines {us / lines:7.3f} us per line")
    print("decode_message on frames with bytes invalid in UTF-8, as a ratio to "
          "bytes.decode(errors='replace') of the same frame (dense: flat as the frame grows):")
    for label, size, every in (("sparse, 1 per 64 KB", 4, 65536), ("sparse, 1 per 64 KB", 16, 65536),
                               ("dense, every byte", 4, 1), ("dense, every byte", 16, 1),
                               ("every other byte", 16, 2)):
        body = bytearray(b"a" * (size << 20))
        body[::every] = b"\xff" * len(body[::every])
        frame = head + bytes(body)
        valid = head + bytes(body).replace(b"\xff", b"\xc3\xa9")
        plain = best_us(lambda: frame.decode("utf-8", "replace"), 1, rounds=3)
        good = best_us(lambda: decode_message(valid, "utf-8", normalise=True), 1, rounds=3)
        us = best_us(lambda: decode_message(frame, "utf-8", normalise=True), 1, rounds=3)
        print(f"  {label:20s} {size:3d} MB {us / 1000:8.1f} ms  x{us / plain:5.1f}"
              f"  x{us / good:5.1f} of the same frame with each bad byte an é")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
