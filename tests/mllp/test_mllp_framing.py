from __future__ import annotations

import pytest
from mllp_battery import CR, FS, MSG_A, MSG_B, MSG_C, VT, FramingBattery, Outcome, splits

from mllp import (
    DEFAULT_MAX_FRAME_SIZE,
    Event,
    Frame,
    FrameDecoder,
    FrameRestarted,
    FrameTooLarge,
    InvalidPayload,
    MLLPError,
    StrayBytes,
    encode_frame,
)


def decode(chunks: list[bytes], **options: object) -> list[Event]:
    decoder = FrameDecoder(**options)  # type: ignore[arg-type]
    events: list[Event] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return merge_stray(events)


def merge_stray(events: list[Event]) -> list[Event]:
    """Join StrayBytes events that a split between reads cut in two."""
    merged: list[Event] = []
    for event in events:
        if isinstance(event, StrayBytes) and merged and isinstance(merged[-1], StrayBytes):
            merged[-1] = StrayBytes(merged[-1].count + event.count)
        else:
            merged.append(event)
    return merged


class TestDecoderBattery(FramingBattery):
    def run(self, chunks: list[bytes], **options: object) -> Outcome:
        events = decode(chunks, **options)
        return Outcome(
            frames=tuple(e.payload for e in events if isinstance(e, Frame)),
            stray=sum(e.count for e in events if isinstance(e, StrayBytes)),
            restarted=tuple(e.discarded for e in events if isinstance(e, FrameRestarted)),
            too_large=sum(1 for e in events if isinstance(e, FrameTooLarge)),
        )


def test_events_come_in_stream_order_for_every_split() -> None:
    data = (
        b"junk"
        + encode_frame(MSG_A)
        + b"\n"
        + VT
        + b"partial"
        + encode_frame(MSG_B)
        + b"!!"
        + encode_frame(MSG_C)
    )
    expected = [
        StrayBytes(4),
        Frame(MSG_A),
        StrayBytes(1),
        FrameRestarted(7),
        Frame(MSG_B),
        StrayBytes(2),
        Frame(MSG_C),
    ]
    for size, chunks in splits(data):
        assert decode(chunks) == expected, f"chunk size {size}"


def test_stray_run_is_reported_in_the_read_it_arrived_in() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"abc") == [StrayBytes(3)]
    assert decoder.feed(b"de" + VT) == [StrayBytes(2)]
    assert decoder.feed(b"x" + FS + CR) == [Frame(b"x")]


def test_oversize_frame_is_reported_once_and_decoding_resumes_after_it() -> None:
    decoder = FrameDecoder(max_frame_size=10)
    assert decoder.feed(VT + b"0123456789") == []
    assert decoder.feed(b"A") == [FrameTooLarge(11)]
    assert decoder.buffered == 11
    assert decoder.feed(b"B" * 1000 + FS + b"more" + FS) == []
    assert decoder.feed(CR + encode_frame(b"next")) == [Frame(b"next")]
    assert decoder.buffered == 0


def test_oversize_size_is_what_had_arrived_when_noticed() -> None:
    events = FrameDecoder(max_frame_size=10).feed(VT + b"x" * 25 + FS + CR)
    assert events == [FrameTooLarge(25)]


def test_vt_inside_oversize_frame_starts_a_new_frame_without_restart_event() -> None:
    decoder = FrameDecoder(max_frame_size=5)
    assert decoder.feed(VT + b"x" * 8) == [FrameTooLarge(8)]
    assert decoder.feed(encode_frame(b"ok")) == [Frame(b"ok")]


def test_buffered_counts_the_unfinished_frame() -> None:
    decoder = FrameDecoder()
    assert decoder.buffered == 0
    decoder.feed(b"zz" + VT + b"abc")
    assert decoder.buffered == 3
    decoder.feed(FS)
    assert decoder.buffered == 3
    decoder.feed(CR)
    assert decoder.buffered == 0


def test_lenient_cr_after_fs_split_across_reads_is_not_stray() -> None:
    decoder = FrameDecoder(lenient_end=True)
    assert decoder.feed(VT + b"a" + FS) == [Frame(b"a")]
    assert decoder.feed(CR) == []
    assert decoder.feed(CR) == [StrayBytes(1)]


def test_large_frame_in_many_reads() -> None:
    payload = bytes(range(32, 127)) * 20_000  # ~1.9 MB
    data = encode_frame(payload)
    decoder = FrameDecoder()
    events: list[Event] = []
    for i in range(0, len(data), 4096):
        events.extend(decoder.feed(data[i : i + 4096]))
    assert events == [Frame(payload)]


def test_default_limit_is_16_mib() -> None:
    assert DEFAULT_MAX_FRAME_SIZE == 16 * 1024 * 1024
    assert FrameDecoder().max_frame_size == DEFAULT_MAX_FRAME_SIZE


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_invalid_max_frame_size(bad: object) -> None:
    with pytest.raises(ValueError, match="max_frame_size"):
        FrameDecoder(max_frame_size=bad)  # type: ignore[arg-type]


def test_frame_repr_hides_the_payload() -> None:
    assert repr(Frame(b"PID|1||SECRET")) == "Frame(<13 bytes>)"


def test_encode_frame() -> None:
    assert encode_frame(b"MSH|x\rPID|1") == b"\x0bMSH|x\rPID|1\x1c\r"
    assert encode_frame(bytearray(b"a")) == b"\x0ba\x1c\r"
    assert encode_frame(b"") == b"\x0b\x1c\r"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"ab\x0bcd", "VT \\(0x0B\\) at offset 2"),
        (b"abc\x1c", "FS \\(0x1C\\) at offset 3"),
    ],
)
def test_encode_frame_refuses_block_characters(payload: bytes, message: str) -> None:
    with pytest.raises(InvalidPayload, match=message) as info:
        encode_frame(payload)
    assert isinstance(info.value, MLLPError)
    assert isinstance(info.value, ValueError)


def test_encode_frame_refuses_text() -> None:
    with pytest.raises(TypeError, match="bytes, not str"):
        encode_frame("MSH|")  # type: ignore[arg-type]


def test_round_trip_over_every_split() -> None:
    payloads = [MSG_A, b"", MSG_B + FS + b"x", MSG_C]
    # encode_frame refuses FS, so the one payload with a lone FS is framed by hand.
    data = b"".join(VT + p + FS + CR for p in payloads)
    for size, chunks in splits(data):
        assert decode(chunks) == [Frame(p) for p in payloads], f"chunk size {size}"


def test_many_lone_fs_bytes_in_one_read() -> None:
    data = VT + (b"a" + FS) * 1000 + CR + VT * 3 + encode_frame(b"end")
    assert FrameDecoder().feed(data) == [
        Frame((b"a" + FS) * 999 + b"a"),
        FrameRestarted(0),  # VT VT VT, then the VT that opens b"end"
        FrameRestarted(0),
        FrameRestarted(0),
        Frame(b"end"),
    ]
