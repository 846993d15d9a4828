"""Limits on REST connections: how many at once, and how long a request may take to arrive.

The REST listener shares the process, and so its file descriptors, with the MLLP
listener.  Without a limit, HTTP clients that connect and send nothing (each held until
the 60-second idle timeout) could take every descriptor the process may open; the MLLP
listener then accepted no connection, and interface engines got resets instead of ACKs.
So at most ``max_connections`` are open at once (``[http] max_connections``, as MLLP has
its own); more are closed on arrival.

That alone would let a hundred clients that send one byte every few seconds -- which
resets twisted.web's idle timeout every time -- hold every REST connection for as long as
they like.  So a connection also has ``request_timeout`` seconds, from when it opens or
from the last byte of a response, until the server starts answering its next request: a
complete request is answered at once (rendering is synchronous), so only a request that
has not fully arrived by then is cut off, with 408 ``RequestTimeout``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IAddress, IDelayedCall, IProtocolNegotiationFactory
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from zope.interface import implementer

from gateway.logging import get_logger

from .errors import JSON_CONTENT_TYPE, ApiError, error_body

__all__ = ["ConnectionLimit", "REQUEST_TIMEOUT"]

log = get_logger("gateway.http")

# Enough for a 1 MiB body at 20 KB/s; twisted.web's idle timeout is 60 s as well.
REQUEST_TIMEOUT = 60.0


class _Deadline(ProtocolWrapper):
    """One connection: answered within the deadline, or told so and closed."""

    factory: ConnectionLimit
    _timer: IDelayedCall | None = None
    _receiving = False  # bytes of a request have come since the last response

    def makeConnection(self, transport: Any) -> None:  # noqa: N802 - twisted naming
        super().makeConnection(transport)
        self._arm()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - twisted naming
        self._receiving = True
        super().dataReceived(data)

    def write(self, data: bytes) -> None:
        self._responding()
        super().write(data)

    def writeSequence(self, data: Any) -> None:  # noqa: N802 - twisted naming
        self._responding()
        super().writeSequence(data)

    def _responding(self) -> None:
        """A response is under way: the clock runs again from its last byte."""
        self._receiving = False
        self._arm()

    def connectionLost(self, reason: Any) -> None:  # noqa: N802 - twisted naming
        self._disarm()
        super().connectionLost(reason)

    def _arm(self) -> None:
        self._disarm()
        self._timer = self.factory.clock.callLater(self.factory.request_timeout, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if not self._receiving:
            # Idle between requests: closed without an answer nobody asked for (a client
            # could read it as the response to the next request it sends).
            self.transport.loseConnection()
            return
        seconds = self.factory.request_timeout
        error = ApiError(408, "RequestTimeout",
                         f"The request did not arrive within {seconds:g} seconds.")
        body = error_body(error)
        head = (f"HTTP/1.1 408 Request Timeout\r\nContent-Type: {JSON_CONTENT_TYPE}\r\n"
                f"Content-Length: {len(body)}\r\nx-ms-error-code: {error.code}\r\n"
                "Connection: close\r\n\r\n").encode("ascii")
        # Straight to the socket: the channel may be in the middle of reading a request.
        self.transport.write(head + body)
        self.transport.loseConnection()
        self.factory.wrappedFactory.count_request(408)
        log.info("REST request timed out", seconds=seconds)


@implementer(IProtocolNegotiationFactory)
class ConnectionLimit(WrappingFactory):
    """Wraps the REST site: a connection over the limit is closed before a byte is read,
    and one whose request does not arrive within ``request_timeout`` gets 408."""

    protocol = _Deadline
    noisy = False  # as the site: no "Starting factory" lines

    def __init__(self, site: Any, max_connections: int, *,
                 request_timeout: float = REQUEST_TIMEOUT, clock: Any = None) -> None:
        super().__init__(site)
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self.clock = clock if clock is not None else site.reactor

    def acceptableProtocols(self) -> list[bytes]:  # noqa: N802 - twisted naming
        """The site's ALPN protocols: Twisted's TLS layer asks the factory it wraps, and a
        factory that names none fails every handshake in which the client offers ALPN (as
        curl and urllib3, under the Azure SDK, do)."""
        protocols: list[bytes] = self.wrappedFactory.acceptableProtocols()
        return protocols

    def buildProtocol(self, addr: IAddress) -> Any:  # noqa: N802 - twisted naming
        if len(self.protocols) >= self.max_connections:
            log.warning("REST connection refused", limit=self.max_connections)
            return None  # the reactor closes the accepted socket at once
        return super().buildProtocol(addr)
