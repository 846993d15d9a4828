"""The one place where outcomes become acknowledgement codes.

==============================================  ====  ==========  ===============
outcome                                         code  ERR (0357)  stored status
==============================================  ====  ==========  ===============
accepted and committed                          AA    -           received
``mappings.errors.ContentError`` (bad content)  AE    100-103     rejected
``ri_engine.errors.RequestError`` (ack_after =  AE    199         rejected
analysis: the engine refused the report)
``mappings.errors.UnsupportedMessage``          AR    200-203     rejected
``mappings.errors.UnreadableHeader``            AR    102/101     rejected
any other ``HL7Error``                          AR    its code    rejected
``ri_engine.errors.AnalysisFailure``            AR    207         rejected
``gateway.errors.AuditError`` (not stored)      AR    207         (not stored)
any other exception (our own bug)               AR    207         rejected
==============================================  ====  ==========  ===============

**Enhanced mode.**  When the sender fills MSH-15 or MSH-16 it asks for HL7 enhanced
acknowledgement; the accept acknowledgement then uses CA/CE/CR for AA/AE/AR.  An accept
ACK is always sent whatever MSH-15 says (NE/ER/SU): MLLP senders wait for one reply per
frame, and a missing reply would only cost the sender a timeout and a resend.

Error texts describe the fault ("message type ZDT is not accepted"); they never quote
report content, so they are safe in ERR segments and logs alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from mappings.errors import ContentError, HL7Error, UnreadableHeader, UnsupportedMessage
from ri_engine.errors import AnalysisFailure, RequestError

from .errors import AuditError

__all__ = ["AckDecision", "decide", "enhanced_mode", "internal_error"]

_ENHANCED = {"AA": "CA", "AE": "CE", "AR": "CR"}


@dataclass(frozen=True)
class AckDecision:
    code: str  # AA, AE or AR (before the enhanced-mode translation)
    error: HL7Error | None
    outcome: str  # accepted | error | rejected | failed: for logs and metrics

    @property
    def accepted(self) -> bool:
        return self.code == "AA"

    def code_for(self, enhanced: bool) -> str:
        return _ENHANCED[self.code] if enhanced else self.code


def internal_error(message: str = "internal error; the message was not processed") -> HL7Error:
    return HL7Error(message, err_code="207", location="")


ACCEPTED = AckDecision("AA", None, "accepted")


def decide(exc: BaseException | None) -> AckDecision:
    """The ACK code and ERR contents for an outcome (None = success)."""
    if exc is None:
        return ACCEPTED
    if isinstance(exc, ContentError):
        return AckDecision("AE", exc, "error")
    if isinstance(exc, (UnsupportedMessage, UnreadableHeader)):
        return AckDecision("AR", exc, "rejected")
    if isinstance(exc, HL7Error):
        return AckDecision("AR", exc, "rejected")
    if isinstance(exc, RequestError):
        # 199 (other HL7 error), not 207 (our own failure): the content is what the engine
        # refuses, so a resend gets the same answer; a gateway sending to us judges the ACK
        # by this code and stops resending (gateway.downstream_acks).
        return AckDecision("AE", HL7Error(f"report not analysable: {exc.code}", err_code="199"),
                           "error")
    if isinstance(exc, AnalysisFailure):
        return AckDecision("AR", internal_error("analysis failed; the message was not processed"),
                           "failed")
    if isinstance(exc, AuditError):
        return AckDecision("AR", internal_error("the message could not be stored; send it again"),
                           "failed")
    return AckDecision("AR", internal_error(), "failed")


def enhanced_mode(accept_ack_type: str, application_ack_type: str) -> bool:
    """Whether MSH-15/MSH-16 ask for enhanced acknowledgement."""
    return bool(accept_ack_type.strip() or application_ack_type.strip())
