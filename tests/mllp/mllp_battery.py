"""The framing battery shared by the decoder tests and the listener tests.

Each case is run over every split of its bytes into reads: every chunk size
from 1 (byte by byte) to the whole input in one read.  Subclasses say how the
chunks reach the code under test by implementing ``run()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from mllp import encode_frame

VT, FS, CR = b"\x0b", b"\x1c", b"\r"

# Synthetic payloads shaped like HL7 (CR-separated segments).
MSG_A = b"MSH|^~\\&|RIS|HOSP|GW|HOSP|20240115||ORU^R01|A1|P|2.5\rPID|1||123"
MSG_B = b"MSH|^~\\&|RIS|HOSP|GW|HOSP|20240115||ORU^R01|B2|P|2.5\rOBX|1|TX|||NO ACUTE"
MSG_C = b"MSH|^~\\&|RIS|HOSP|GW|HOSP|20240115||ORU^R01|C3|P|2.5"


@dataclass(frozen=True)
class Outcome:
    """What a run of the battery observed."""

    frames: tuple[bytes, ...] = ()
    stray: int = 0
    restarted: tuple[int, ...] = ()
    too_large: int = 0


def splits(data: bytes) -> Iterator[tuple[int, list[bytes]]]:
    """Every chunk size from 1 to len(data), with the chunks it produces."""
    for size in range(1, len(data) + 1):
        yield size, [data[i : i + size] for i in range(0, len(data), size)]


class FramingBattery:
    """Mixin: one test per framing rule, each checked over every split of the input."""

    def run(
        self, chunks: list[bytes], *, lenient_end: bool = False, max_frame_size: int = 1 << 24
    ) -> Outcome:
        raise NotImplementedError

    def check(self, data: bytes, expected: Outcome, **options: object) -> None:
        for size, chunks in splits(data):
            outcome = self.run(chunks, **options)  # type: ignore[arg-type]
            assert outcome == expected, f"chunk size {size}"

    def test_one_frame(self) -> None:
        self.check(encode_frame(MSG_A), Outcome(frames=(MSG_A,)))

    def test_several_frames(self) -> None:
        data = encode_frame(MSG_A) + encode_frame(MSG_B) + encode_frame(MSG_C)
        self.check(data, Outcome(frames=(MSG_A, MSG_B, MSG_C)))

    def test_empty_payload_is_a_frame(self) -> None:
        self.check(VT + FS + CR + encode_frame(MSG_C), Outcome(frames=(b"", MSG_C)))

    def test_fs_and_cr_in_separate_reads(self) -> None:
        data = encode_frame(MSG_A)
        chunks = [data[:-1], data[-1:]]
        assert self.run(chunks) == Outcome(frames=(MSG_A,))
        # and with the FS alone in the middle read
        chunks = [data[:-2], data[-2:-1], data[-1:]]
        assert self.run(chunks) == Outcome(frames=(MSG_A,))

    def test_stray_bytes_before_between_and_after_frames(self) -> None:
        data = b"GET / HTTP/1.0\r\n" + encode_frame(MSG_A) + b"\n" + encode_frame(MSG_B) + b"zz"
        self.check(data, Outcome(frames=(MSG_A, MSG_B), stray=16 + 1 + 2))

    def test_only_stray_bytes(self) -> None:
        self.check(b"hello\r\n" + CR + FS, Outcome(stray=9))

    def test_cr_lf_after_frame_is_stray(self) -> None:
        data = encode_frame(MSG_A) + b"\n" + encode_frame(MSG_B) + b"\n"
        self.check(data, Outcome(frames=(MSG_A, MSG_B), stray=2))

    def test_vt_inside_frame_restarts_it(self) -> None:
        data = VT + b"MSH|half-sent" + encode_frame(MSG_B)
        self.check(data, Outcome(frames=(MSG_B,), restarted=(13,)))

    def test_vt_after_lone_fs_restarts_and_counts_the_fs(self) -> None:
        data = VT + b"abc" + FS + encode_frame(MSG_A)
        self.check(data, Outcome(frames=(MSG_A,), restarted=(4,)))

    def test_strict_keeps_lone_fs_as_data(self) -> None:
        data = VT + b"a" + FS + b"b" + FS + FS + CR + encode_frame(MSG_C)
        self.check(data, Outcome(frames=(b"a" + FS + b"b" + FS, MSG_C)))

    def test_strict_fs_without_cr_does_not_end_the_frame(self) -> None:
        self.check(VT + MSG_A + FS, Outcome())

    def test_lenient_fs_alone_ends_the_frame(self) -> None:
        self.check(VT + MSG_A + FS, Outcome(frames=(MSG_A,)), lenient_end=True)

    def test_lenient_fs_then_next_frame(self) -> None:
        data = VT + MSG_A + FS + VT + MSG_B + FS + CR + VT + MSG_C + FS
        expected = Outcome(frames=(MSG_A, MSG_B, MSG_C))
        self.check(data, expected, lenient_end=True)

    def test_lenient_fs_then_other_byte_is_stray(self) -> None:
        data = VT + b"a" + FS + b"b" + FS + CR + encode_frame(MSG_C)
        self.check(data, Outcome(frames=(b"a", MSG_C), stray=3), lenient_end=True)

    def test_frame_at_the_size_limit_is_accepted(self) -> None:
        self.check(encode_frame(b"x" * 20), Outcome(frames=(b"x" * 20,)), max_frame_size=20)

    def test_lone_fs_counts_towards_the_size_limit(self) -> None:
        data = VT + b"x" * 19 + FS + b"y" + FS + CR
        self.check(data, Outcome(too_large=1), max_frame_size=20)

    def test_oversize_frame_after_a_good_one(self) -> None:
        data = encode_frame(b"ok") + VT + b"x" * 30 + FS + CR
        self.check(data, Outcome(frames=(b"ok",), too_large=1), max_frame_size=20)
