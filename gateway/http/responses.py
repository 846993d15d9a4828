"""Answering a request after ``render`` returned ``NOT_DONE_YET`` (an answer that waits
for a commit)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.python.failure import Failure

__all__ = ["answer_later"]


def answer_later(request: Any) -> Callable[[bytes], None]:
    """A function that answers ``request`` with a body once it is known, with the
    ``Content-Length`` twisted.web gives a body ``render`` returns (not chunked), and
    does nothing if the client has gone meanwhile."""
    gone: list[Failure] = []
    request.notifyFinish().addErrback(gone.append)

    def answer(body: bytes) -> None:
        if gone:
            return
        request.setHeader("Content-Length", str(len(body)))
        request.write(body)
        request.finish()

    return answer
