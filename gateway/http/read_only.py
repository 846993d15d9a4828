"""The base of the operations endpoints (``/health``, ``/metrics``): GET and HEAD only.

twisted.web answers any other method on a resource itself, with an HTML page: 405 for a
method the class happens to know, and ``501 Huh?`` -- a server error -- for PUT or
DELETE.  Here every other method gets the same 405 and RI error body as the job endpoints.
"""

from __future__ import annotations

from typing import Any

from twisted.web.resource import Resource

from .errors import ApiError, render_error

__all__ = ["ReadOnlyResource"]

_ALLOWED = (b"GET", b"HEAD")


class ReadOnlyResource(Resource):
    """A leaf resource whose subclasses define ``render_GET`` (HEAD is answered from it)."""

    isLeaf = True

    def render(self, request: Any) -> bytes:
        if request.method not in _ALLOWED:
            return render_error(request, ApiError(
                405, "MethodNotAllowed", "Only GET and HEAD are supported here.",
                headers={"Allow": "GET, HEAD"}))
        return super().render(request)
