"""MLLP framing without I/O: an encoder and an incremental decoder.

A frame (HL7 "Minimal Lower Layer Protocol", release 2) is::

    VT (0x0B)  payload  FS (0x1C)  CR (0x0D)

:class:`FrameDecoder` accepts bytes however the network split them (one byte at a
time, FS and CR in different reads, many frames in one read) and returns *events*:

``Frame(payload)``
    a complete frame; ``payload`` excludes VT, FS and CR.
``StrayBytes(count)``
    bytes that arrived outside any frame (before the first VT, between frames,
    a LF some senders add after FS CR).  They are counted, never answered.
    One event is reported per uninterrupted run of such bytes within one
    ``feed()`` call, so a run split over two reads gives two events.
``FrameRestarted(discarded)``
    a VT arrived while a frame was open.  The partial frame (``discarded``
    payload bytes) is dropped and a new frame starts at this VT.  This is what
    a sender does when it gave up on a half-sent message and starts again; the
    alternative, treating the VT as content, would glue two messages together
    and answer neither correctly.
``FrameTooLarge(size)``
    the open frame grew beyond ``max_frame_size`` payload bytes.  ``size`` is the
    number of payload bytes received for it when that was noticed: at least
    ``max_frame_size + 1``, and how far past the limit depends on how the bytes
    were split into reads.  The partial frame is freed at once; the rest of it is
    dropped without further events up to its end (FS CR, or a VT starting a new
    frame).  The server closes the connection on this event.

End of a frame, strict (the default)
    Only FS immediately followed by CR ends a frame.  An FS followed by any
    other byte is kept as payload data, as release 2 of MLLP specifies; the
    following byte is then read as usual (a VT there still restarts the frame).
    An FS at the end of a read waits for the next read to decide.

End of a frame, lenient (``lenient_end=True``)
    For senders that omit the CR: an FS ends the frame at once, so a sender
    that sends ``VT payload FS`` and waits for the reply is answered.  A CR
    directly after that FS is taken as the rest of the trailer; any other byte
    is outside the frame (a VT starts the next frame, anything else is stray).
    The price is that an FS inside the content ends the frame early.

:func:`encode_frame` refuses payloads containing VT or FS (:class:`InvalidPayload`)
rather than emit a frame the receiver would cut in the wrong place.
"""

from __future__ import annotations

from dataclasses import dataclass

from mllp.errors import InvalidPayload

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\r"
DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024

_VT = START_BLOCK[0]
_FS = END_BLOCK[0]
_CR = CARRIAGE_RETURN[0]

# Decoder states.
_OUTSIDE = 0  # between frames: everything except VT is stray
_IN_FRAME = 1  # collecting payload bytes
_AFTER_FS = 2  # strict mode: FS seen in a frame; CR ends the frame, anything else makes FS data
_AFTER_END = 3  # lenient mode: the frame ended at FS; a CR here completes the trailer


@dataclass(frozen=True, slots=True, repr=False)
class Frame:
    """A complete frame's payload (VT, FS and CR removed)."""

    payload: bytes

    def __repr__(self) -> str:
        # The payload is patient data: keep it out of reprs that end up in logs.
        return f"Frame(<{len(self.payload)} bytes>)"


@dataclass(frozen=True, slots=True)
class StrayBytes:
    """``count`` bytes arrived outside any frame."""

    count: int


@dataclass(frozen=True, slots=True)
class FrameTooLarge:
    """The open frame exceeded the size limit after ``size`` payload bytes."""

    size: int


@dataclass(frozen=True, slots=True)
class FrameRestarted:
    """A VT arrived inside an open frame; ``discarded`` payload bytes were dropped."""

    discarded: int


Event = Frame | StrayBytes | FrameTooLarge | FrameRestarted


def encode_frame(payload: bytes) -> bytes:
    """Wrap ``payload`` in VT ... FS CR.

    Raises :class:`InvalidPayload` if the payload contains VT or FS, and
    ``TypeError`` if it is not bytes-like.
    """
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
    payload = bytes(payload)
    for name, byte in (("VT (0x0B)", START_BLOCK), ("FS (0x1C)", END_BLOCK)):
        offset = payload.find(byte)
        if offset >= 0:
            raise InvalidPayload(f"payload contains {name} at offset {offset}")
    return START_BLOCK + payload + END_BLOCK + CARRIAGE_RETURN


class FrameDecoder:
    """Incremental MLLP decoder; see the module docstring for the rules it applies."""

    def __init__(
        self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, lenient_end: bool = False
    ) -> None:
        if (
            isinstance(max_frame_size, bool)
            or not isinstance(max_frame_size, int)
            or max_frame_size < 1
        ):
            raise ValueError(f"max_frame_size must be a positive integer, not {max_frame_size!r}")
        self.max_frame_size = max_frame_size
        self.lenient_end = bool(lenient_end)
        self._state = _OUTSIDE
        self._buffer = bytearray()
        self._size = 0  # payload bytes seen in the open frame, kept or not
        self._oversize = False  # the open frame passed the limit; its bytes are dropped

    @property
    def buffered(self) -> int:
        """Payload bytes of an unfinished frame received so far (0 between frames)."""
        return self._size if self._state in (_IN_FRAME, _AFTER_FS) else 0

    @property
    def ended_by_lone_fs(self) -> bool:
        """The unfinished frame's last byte is an FS not yet followed by CR: what a peer
        that ends its frames with FS alone leaves behind (see ``lenient_end``)."""
        return self._state == _AFTER_FS

    def feed(self, data: bytes) -> list[Event]:
        """Consume ``data`` and return the events it completes, in stream order."""
        events: list[Event] = []
        view = memoryview(data)
        stray = 0
        pos = 0
        end = len(data)
        # Next VT / FS at or after pos (end if none), each found by one fast
        # find() and reused until passed, so every byte is scanned at most
        # once per delimiter however many lone FS bytes the read holds.
        next_vt = next_fs = -1
        while pos < end:
            state = self._state
            if next_vt < pos:
                found = data.find(START_BLOCK, pos)
                next_vt = end if found < 0 else found
            if state == _OUTSIDE:
                stray += next_vt - pos
                if next_vt == end:
                    break
                if stray:
                    events.append(StrayBytes(stray))
                    stray = 0
                self._begin_frame()
                pos = next_vt + 1
            elif state == _IN_FRAME:
                if next_fs < pos:
                    found = data.find(END_BLOCK, pos)
                    next_fs = end if found < 0 else found
                stop = min(next_vt, next_fs)
                if stop > pos:
                    self._take(view[pos:stop], events)
                if stop == end:
                    break
                pos = stop + 1
                if data[stop] == _VT:
                    if not self._oversize:
                        events.append(FrameRestarted(self._size))
                    self._begin_frame()
                elif self.lenient_end:
                    self._finish(events)
                    self._state = _AFTER_END
                else:
                    self._state = _AFTER_FS
            elif state == _AFTER_FS:
                if data[pos] == _CR:
                    pos += 1
                    self._finish(events)
                    self._state = _OUTSIDE
                else:
                    # A lone FS is content; the byte after it is read again as payload.
                    self._state = _IN_FRAME
                    self._take(END_BLOCK, events)
            else:  # _AFTER_END
                if data[pos] == _CR:
                    pos += 1
                self._state = _OUTSIDE
        if stray:
            events.append(StrayBytes(stray))
        return events

    def _begin_frame(self) -> None:
        self._state = _IN_FRAME
        self._buffer = bytearray()
        self._size = 0
        self._oversize = False

    def _take(self, chunk: memoryview | bytes, events: list[Event]) -> None:
        self._size += len(chunk)
        if self._oversize:
            return
        if self._size > self.max_frame_size:
            self._oversize = True
            self._buffer = bytearray()  # free the partial frame now, not at its end
            events.append(FrameTooLarge(self._size))
            return
        self._buffer += chunk

    def _finish(self, events: list[Event]) -> None:
        if not self._oversize:
            events.append(Frame(bytes(self._buffer)))
        self._buffer = bytearray()
        self._size = 0
        self._oversize = False
