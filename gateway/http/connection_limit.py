"""At most ``max_connections`` REST connections at once; more are closed on arrival.

The REST listener shares the process, and so its file descriptors, with the MLLP
listener.  Without a limit, HTTP clients that connect and send nothing (each held until
the 60-second idle timeout) or one byte at a time (held for as long as they keep it up)
could take every descriptor the process may open; the MLLP listener then accepted no
connection, and interface engines got resets instead of ACKs.  MLLP has its own
``[mllp] max_connections``; this is the REST side's.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IAddress, IProtocolNegotiationFactory
from twisted.protocols.policies import WrappingFactory
from zope.interface import implementer

from gateway.logging import get_logger

__all__ = ["ConnectionLimit"]

log = get_logger("gateway.http")


@implementer(IProtocolNegotiationFactory)
class ConnectionLimit(WrappingFactory):
    """Wraps the REST site: a connection over the limit is closed before a byte is read."""

    noisy = False  # as the site: no "Starting factory" lines

    def __init__(self, site: Any, max_connections: int) -> None:
        super().__init__(site)
        self.max_connections = max_connections

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
