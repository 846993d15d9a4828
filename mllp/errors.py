"""Errors raised by the MLLP layer.

Every error derives from :class:`MLLPError`, so callers can catch the whole
family in one place::

    MLLPError
    ├── InvalidPayload     encode_frame() was given bytes that would break the framing
    ├── AckTimeout         no reply frame arrived in time; the connection was aborted
    ├── ConnectionClosed   the connection ended before the reply arrived, or was closed
    ├── ReplyTooLarge      the reply frame exceeded the client's frame size limit
    ├── ClientBusy         send() was called while an earlier reply was still awaited
    └── CloseWithoutReply  raised by a server's handler: leave this frame unanswered and
                           end the connection (a decision, not a failure)

Framing problems on the *receiving* side are not errors: the decoder reports them
as events (see :mod:`mllp.framing`) and the protocols decide what to do.
"""

from __future__ import annotations


class MLLPError(Exception):
    """Base class of every error raised by :mod:`mllp`."""


class InvalidPayload(MLLPError, ValueError):
    """A payload contained a block character (VT or FS) and cannot be framed.

    HL7 content never contains these bytes; sending one would make the
    receiver end or restart the frame in the middle of the message.
    """


class AckTimeout(MLLPError):
    """No reply frame arrived within the timeout.

    The client aborts the connection when this happens, so a reply that
    arrives late can never be taken as the answer to a later message.
    """

    def __init__(self, timeout: float, hint: str = "") -> None:
        super().__init__(f"no reply within {timeout:g} s; connection aborted"
                         + (f" ({hint})" if hint else ""))
        self.timeout = timeout
        self.hint = hint  # what was received meanwhile, when it explains the timeout


class ConnectionClosed(MLLPError):
    """The connection was closed before the reply arrived, or was already closed."""


class ReplyTooLarge(MLLPError):
    """The reply frame grew beyond the client's ``max_frame_size``; connection aborted."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"reply frame exceeds {limit} bytes; connection aborted")
        self.limit = limit


class ClientBusy(MLLPError):
    """``send()`` was called while the reply to the previous message was still awaited.

    MLLP carries no correlation id, so the client keeps one message in flight
    per connection: the next reply frame always belongs to the last message sent.
    """


class CloseWithoutReply(MLLPError):
    """Raised by a listener's handler (or its Deferred fails with it) when a frame must
    not be answered and the connection should end: the handler's decision about a frame it
    can make no reply to, not a bug.  The listener closes the connection after the replies
    already written and logs ``mllp.closed_without_reply`` (a warning naming the exception
    class), where any other exception is logged as ``mllp.handler_failed``, an error.
    """
