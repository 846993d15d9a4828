"""The inbound message handler: decode, check, map, persist, then ACK.

:class:`Receiver` is the ``mllp.server.MessageHandler`` of the listener.  For each
frame (the listener calls it serially per connection, so ACKs leave in order):

1. decode the bytes (``mappings.decoding``; never fails);
2. read MSH (``mappings.header``).  Unreadable: the message is stored as ``rejected``
   and answered AR when ``mappings.ack.build_unreadable_ack`` can address an answer;
   when it cannot (no MSH-10), nothing is sent and the connection is closed;
3. accepted type/version/processing id (``mappings.policy``), else AR; one message per
   frame (``mappings.header.check_single_message``), else AE;
4. the content rules (``[mllp] map_before_ack``): bad content gets AE.

   * ``"check"`` (default): ``mappings.inbound.check_oru`` applies the rules of the
     mapping that answer AE (PID before the OBR, a patient id, an OBR, a usable date,
     some report text) in one cheap pass; the mapping itself runs in the workers;
   * ``"full"``: the ORU is mapped to RI requests here (``map_oru``), before the ACK;
   * ``"none"``: nothing: the body is not even split into segments; a content error is
     found by the workers, after the ACK (``gateway.pipeline``);
5. commit the raw message with its ACK (group commit) and only then return the ACK;
6. hand the accepted message to the analysis pipeline (off the reactor thread).

Steps 1-3 read MSH only (and look for a second one): AR and duplicates need MSH only, AE
needs step 4.

**Duplicates** (same MSH-3, MSH-4, MSH-10 as an accepted message) get the ORIGINAL ACK
bytes again, a ``duplicate`` event is audited and nothing is processed.  The check is
part of the commit (``gateway.audit.received_op``: the unique index finds them on the
writer thread, no query per message on the reactor).  A duplicate of a message whose
commit (or, with ``ack_after = "analysis"``, analysis) is still running waits until the
original is answered, is then audited exactly as a later duplicate would be
(``gateway.audit.duplicate_op``) and gets the original's ACK; with ``ack_after =
"analysis"`` so does one of a stored message a restart analyses again, or has yet to
(``analysing_stored``, ``_wait_for_analysis``).  Stored bytes holding a VT or FS
(written before ACKs were made frameable, ``mappings.ack.frameable_ack``) are escaped
before they are sent again.  With ``ack_after = "analysis"`` an original that was analysed
but never answered (the gateway stopped in between) is accepted all the same: its resend
gets AA, recorded on the original (``_answer_unanswered``).

Which outcome gets which code is decided in :mod:`gateway.ack_policy` only.  Every
message produces one log line ``hl7.message`` with outcome, ACK code and duration; an ACK
the listener could not write because the connection was gone adds ``hl7.ack_dropped``.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from mappings.ack import (
    build_ack, build_unreadable_ack, encode_message, frameable_ack, parse_ack,
)
from mappings.decoding import DecodedMessage, decode_message, normalise_segments
from mappings.errors import ContentError, HL7Error, UnreadableHeader
from mappings.header import check_single_message, read_header
from mappings.policy import AcceptancePolicy
from mllp.errors import CloseWithoutReply

from .ack_policy import AckDecision, decide, enhanced_mode
from .audit import (
    Duplicate, ReceivedMessage, ack_op, duplicate_op, event_op, received_op, utc_now,
)
from .config import MLLPSettings
from .errors import GatewayError, audit_reason
from .pipeline import AcceptedMessage

__all__ = ["DECODE_OFF_REACTOR", "ControlIds", "Receiver", "UnanswerableMessage"]

# Frames of at least this many bytes are decoded on a thread (Receiver.handle).
DECODE_OFF_REACTOR = 1 << 20


class UnanswerableMessage(GatewayError, CloseWithoutReply):
    """No ACK can be addressed (MSH-10 unreadable): the listener closes the connection."""


# What a frame holding no message is made of: an empty frame, or padding alone.
_BLANK = b" \t\r\n\x00"


class ControlIds:
    """MSH-10 values for our ACKs: unique across restarts, at most 20 characters."""

    def __init__(self, prefix: str = "RIG", clock: Callable[[], float] = time.time) -> None:
        self.prefix = prefix
        self.clock = clock
        self._counter = itertools.count()
        self._millis, self._stamp = -1, ""  # the last clock reading and its base 36

    def __call__(self) -> str:
        millis = int(self.clock() * 1000)
        if millis != self._millis:
            self._millis, self._stamp = millis, _base36(millis)
        return f"{self.prefix}{self._stamp}{next(self._counter) % 36 ** 4:04d}"[:20]


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return (out or "0").upper()


def _acked_control_id(ack_text: str) -> str | None:
    """MSA-2 of an ACK we built (the inbound control id it answers)."""
    fs = ack_text[3:4]
    for segment in ack_text.split("\r"):
        if fs and segment.startswith("MSA" + fs):
            fields = segment.split(fs)
            return fields[2] if len(fields) > 2 and fields[2] else None
    return None


@dataclass(frozen=True, slots=True)
class _Answer:
    """How an in-flight original was answered, handed to the duplicates that waited."""

    ack: bytes | None
    message_id: int | None  # the stored original; None when it could not be stored
    ack_code: str | None


@dataclass(slots=True)
class _InFlight:
    """An accepted message being committed (or analysed) and the duplicates waiting for it."""

    record: ReceivedMessage
    waiting: list[defer.Deferred] = field(default_factory=list)


def default_mapper(mapping_config: Any = None) -> Callable[[str], list[Any]]:
    from mappings.inbound import map_oru

    return lambda text: map_oru(text, mapping_config)


def default_checker(mapping_config: Any = None) -> Callable[[str, Any], int]:
    from mappings.inbound import check_oru

    return lambda text, header: check_oru(text, mapping_config, header)


class Receiver:
    def __init__(self, committer: Any, *, settings: MLLPSettings | None = None,
                 mapper: Callable[[str], list[Any]] | None = None,
                 checker: Callable[[str, Any], int] | None = None,
                 on_accepted: Callable[[AcceptedMessage], Any] | None = None,
                 ids: Callable[[], str] | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 clock: Callable[[], float] = time.monotonic, metrics: Any = None,
                 log: Any = None, ack_after: str = "persistence",
                 run_off_reactor: Callable[[Callable[[], Any]], defer.Deferred] | None = None
                 ) -> None:
        self.committer = committer
        # Why the last inbound message could not be stored (None: it was): the /health
        # check ``message_store``.  The health probe's own small write can still fit where
        # a message's cannot (a full disk), so the probe alone said "pass" while every
        # sender was answered AR.
        self.store_failure: str | None = None
        # Hands a stored message to the analysis now, out of turn (gateway.feed.Resume):
        # its resend waits for that analysis (_wait_for_analysis). Set by build_gateway.
        self.take_up: Callable[[int], None] | None = None
        # Runs a large frame's decoding (DECODE_OFF_REACTOR): the gateway's one decoder
        # thread (build_gateway); by default the reactor's thread pool.
        self.run_off_reactor = run_off_reactor or _in_thread
        # "persistence": ACK once committed; "analysis": ACK once analysed (on_accepted
        # must then return a Deferred firing with the pipeline's final status).
        self.ack_after = ack_after
        self.settings = settings or MLLPSettings()
        self.policy = AcceptancePolicy.from_lists(
            message_types=self.settings.accepted_message_types,
            versions=self.settings.accepted_versions,
            processing_ids=self.settings.accepted_processing_ids)
        self.mapper = mapper or default_mapper()
        self.checker = checker or default_checker()
        self.on_accepted = on_accepted
        self.ids = ids or ControlIds()
        self.now = now
        self.clock = clock
        self.metrics = metrics
        if log is None:
            from .logging import get_logger
            log = get_logger("gateway.receiver")
        self.log = log
        # Accepted messages whose commit is still running, by duplicate key: the
        # Deferreds of duplicates that arrived meanwhile wait here for the ACK.
        self._inflight: dict[tuple[str, str, str], _InFlight] = {}

    # --- the MessageHandler interface --------------------------------------------------

    def handle(self, payload: bytes, conn: Any) -> defer.Deferred | bytes | None:
        if not payload.strip(_BLANK):
            # No message, so nothing to store or to address an ACK to; a frame some
            # senders use to keep an idle connection open. Not answered, and the
            # connection stays open (closing it made such a sender reconnect each time).
            if self.metrics is not None:
                self.metrics.inc("ri_gateway_empty_frames_total")
            self.log.info("hl7.empty_frame", conn_id=conn.conn_id, peer=conn.peer,
                          size=len(payload))
            return None
        started = self.clock()
        received = self.now()
        mode = self.settings.map_before_ack
        # Segments are normalised only for the parse; MSH reads the same either way
        # (read_header ignores the padding normalising strips: NULs, whitespace).
        decode = functools.partial(decode_message, payload, self.settings.default_charset,
                                   normalise=mode != "none")
        if len(payload) < DECODE_OFF_REACTOR:
            return self._decoded(decode(), payload, conn, received, started)
        # A frame of megabytes takes tens to hundreds of milliseconds to decode (more in a
        # double-byte charset full of invalid bytes): on a thread, so that the reactor
        # serves the other connections meanwhile. This connection's next frame waits for
        # this one's ACK (the listener hands over one frame at a time), so ACKs keep order.
        return self.run_off_reactor(decode).addCallback(
            self._decoded, payload, conn, received, started)

    def _decoded(self, decoded: DecodedMessage, payload: bytes, conn: Any, received: datetime,
                 started: float) -> defer.Deferred | bytes | None:
        mode = self.settings.map_before_ack
        try:
            header = read_header(decoded.text)
        except UnreadableHeader as exc:
            # build_unreadable_ack salvages MSH from the start of the text it is given: the
            # normalised text (padding stripped) in every mode, so that the modes answer
            # alike. Rare enough for the extra pass.
            text = decoded.text if mode != "none" else normalise_segments(decoded.text)
            return self._unreadable(payload, text, decoded, exc, conn, received, started)

        # Every mode, every type: the ACK would answer the first message of a batch only.
        # Such a frame is no duplicate of its first message either: answered with that
        # message's ACK, the others would be lost.
        try:
            check_single_message(decoded.text, header)
            several = None
        except ContentError as exc:
            several = exc
        key = (header.sending_application, header.sending_facility, header.control_id)
        if several is None and key in self._inflight:
            return self._inflight_duplicate(key, header, payload, conn, received, started)

        error: BaseException | None = None
        reports: tuple[Any, ...] | None = None  # mapped here only with "full"
        groups: int | None = None
        try:
            self.policy.check(header)
            if several is not None:
                raise several
            if not header.is_report:
                # Another type the configuration accepts (ADT, ORM, ...): stored and
                # ACKed from MSH alone; the content rules and the mapping are the ORU's.
                reports, groups = (), 0
            elif mode == "check":
                groups = self.checker(decoded.text, header)
            elif mode == "full":
                reports = tuple(self.mapper(decoded.text))
                groups = len(reports)
        except Exception as exc:  # noqa: BLE001 - every outcome gets an ACK (ack_policy)
            error = exc
            if not isinstance(exc, HL7Error):
                self.log.error("hl7.mapping_failed", control_id=header.control_id,
                               conn_id=conn.conn_id, error=type(exc).__name__)
        decision = decide(error)
        code: str | None
        ack_id: str | None
        ack: bytes | None
        code, ack_id, ack = self._built_ack(decision, header, decoded.charset, received)
        if decision.accepted and self.ack_after == "analysis":
            code = ack_id = ack = None  # decided once the engine has run
        record = ReceivedMessage(
            raw=payload, received_at=utc_now(received), conn_id=conn.conn_id, peer=conn.peer,
            status="received" if decision.accepted else "rejected", ack_code=code,
            ack_payload=ack, ack_control_id=ack_id, control_id=header.control_id,
            sending_application=header.sending_application,
            sending_facility=header.sending_facility,
            receiving_application=header.receiving_application,
            receiving_facility=header.receiving_facility, message_type=header.message_code,
            version=header.version, processing_id=header.processing_id, charset=decoded.charset,
            error_code=decision.error.err_code if decision.error else None,
            error_text=decision.error.message if decision.error else None,
            reports=groups if decision.accepted else None)
        if decision.accepted:
            self._inflight[key] = _InFlight(record)
        d = self.committer.submit(received_op(record, duplicates=several is None,
                                              replaced=decoded.replaced or None))
        d.addCallbacks(self._stored, self._not_stored,
                       callbackArgs=(record, key, header, decoded.text, reports, decision, started,
                                     mode != "none"),
                       errbackArgs=(record, key, header, decoded.charset, started))
        return d

    def reply_dropped(self, payload: bytes, reply: bytes, conn: Any) -> None:
        """The listener could not write our ACK: the connection was gone or closing.

        What the ACK said stands (a message answered AA is stored and analysed), but the
        sender never saw it and will probably send the message again, to be answered as
        a duplicate.  Logged by ids and code, read back from our own ACK (MSA-2 is also
        there when the inbound MSH was unreadable); never the message.
        """
        try:
            ack = parse_ack(reply)
        except HL7Error:  # not expected of an ACK we built; the line is still worth having
            code, control_id = None, None
        else:
            code, control_id = ack.code, ack.acked_control_id or None
        self.log.warning("hl7.ack_dropped", control_id=control_id, conn_id=conn.conn_id,
                         peer=conn.peer, ack_code=code)

    # --- outcomes --------------------------------------------------------------------------

    def _stored(self, message_id: int | Duplicate, record: ReceivedMessage,
                key: tuple[str, str, str], header: Any, text: str,
                reports: tuple[Any, ...] | None, decision: Any, started: float,
                normalised: bool) -> defer.Deferred | bytes:
        self.store_failure = None
        if isinstance(message_id, Duplicate):
            return self._stored_duplicate(message_id, record, key, header, started)
        message = AcceptedMessage(message_id, record.control_id or "", header, text, reports,
                                  normalised)
        if decision.accepted and record.ack_code is None:
            return self._after_analysis(message, record, key, header, started)
        ack = record.ack_payload or b""
        self._answer_waiting(key, record, ack, message_id, record.ack_code)
        self._count(record.message_type, record.ack_code)
        self.log.info("hl7.message", control_id=record.control_id, conn_id=record.conn_id,
                      peer=record.peer, message_id=message_id, message_type=record.message_type,
                      outcome=decision.outcome, ack_code=record.ack_code,
                      error_code=record.error_code, reports=record.reports, size=len(record.raw),
                      duration_ms=self._ms(started))
        if decision.accepted and self.on_accepted is not None:
            self.on_accepted(message)
        return ack

    def _after_analysis(self, message: AcceptedMessage, record: ReceivedMessage,
                        key: tuple[str, str, str], header: Any, started: float
                        ) -> defer.Deferred:
        """``ack_after = "analysis"``: AA once analysed (or skipped); AE when the mapping
        found bad content or the engine refused the report, AR when analysis failed."""
        message_id = message.message_id
        d = defer.maybeDeferred(self.on_accepted or (lambda m: None), message)

        def answer(status: Any) -> defer.Deferred:
            decision = _analysis_decision(status)

            def sent(code: str) -> None:
                self._count(record.message_type, code)
                self.log.info("hl7.message", control_id=record.control_id,
                              conn_id=record.conn_id, peer=record.peer, message_id=message_id,
                              message_type=record.message_type, outcome=decision.outcome,
                              ack_code=code, analysis=status if isinstance(status, str) else None,
                              duration_ms=self._ms(started))

            return self._send_recorded_ack(message_id, decision, record, key, header, started,
                                           sent)

        return d.addBoth(answer)

    def _send_recorded_ack(self, message_id: int, decision: AckDecision, record: ReceivedMessage,
                           key: tuple[str, str, str], header: Any, started: float,
                           sent: Callable[[str], None]) -> defer.Deferred:
        """Answer a stored message once its ACK is recorded on it (``ack_op``): ``sent(code)``
        logs it, and the duplicates waiting for it get the same ACK."""
        charset = record.charset or "utf-8"
        code, ack_id, ack = self._built_ack(decision, header, charset)
        stored = self.committer.submit(ack_op(
            message_id, code, ack, ack_id, decision.error.err_code if decision.error else None,
            decision.error.message if decision.error else None))

        def recorded(_: Any) -> bytes:
            self._answer_waiting(key, record, ack, message_id, code)
            sent(code)
            return ack

        def not_recorded(failure: Failure) -> bytes:
            # The message is stored but its ACK could not be: the sender is told we failed
            # (AR 207, as for a message that could not be stored), and the duplicates
            # waiting for this ACK get the same answer instead of waiting for ever.
            return self._not_stored(failure, record, key, header, charset, started,
                                    message_id=message_id, outcome="ack_not_recorded")

        return stored.addCallbacks(recorded, not_recorded)

    def _not_stored(self, failure: Failure, record: ReceivedMessage, key: tuple[str, str, str],
                    header: Any, charset: str, started: float, *, message_id: int | None = None,
                    outcome: str = "not_stored") -> defer.Deferred | bytes:
        decision = decide(failure.value if failure.check(GatewayError) else
                          _storage_error(failure))
        code, _, ack = self._built_ack(decision, header, charset)
        self.store_failure = audit_reason(failure.value) or failure.type.__name__
        self._answer_waiting(key, record, ack, message_id, code)
        self._count(record.message_type, code)
        self.log.error("hl7.message", control_id=record.control_id, conn_id=record.conn_id,
                       peer=record.peer, message_id=message_id,
                       message_type=record.message_type, outcome=outcome,
                       ack_code=code, error=failure.type.__name__,
                       reason=audit_reason(failure.value), duration_ms=self._ms(started))
        return ack

    def _stored_duplicate(self, duplicate: Duplicate, record: ReceivedMessage,
                          key: tuple[str, str, str], header: Any, started: float
                          ) -> defer.Deferred | bytes | None:
        """The commit found an accepted original (its ``duplicate`` event is committed)."""
        if duplicate.ack_code is None and duplicate.status == "received":
            return self._wait_for_analysis(duplicate, record, key, header, started)
        if duplicate.ack_code is None:
            return self._answer_unanswered(duplicate, record, key, header, started)
        ack = duplicate.ack_payload
        if ack is not None:
            # An ACK stored by an earlier version may hold a VT or FS copied from the
            # sender's MSH: the framing refuses it, so it was never delivered, and the
            # sender resends until it gets one it can read.
            ack = frameable_ack(ack, self.settings.default_charset)
        self._answer_waiting(key, record, ack, duplicate.original_id, duplicate.ack_code)
        self._log_duplicate(header, record.conn_id, record.peer, duplicate.original_id,
                            duplicate.ack_code, duplicate.same_content, started)
        return ack

    def _wait_for_analysis(self, duplicate: Duplicate, record: ReceivedMessage,
                           key: tuple[str, str, str], header: Any, started: float
                           ) -> defer.Deferred | bytes:
        """``ack_after = "analysis"``: the original was stored by an earlier run and is
        neither analysed nor answered: the restart has not taken it up yet (a backlog
        larger than the analysis pool). Stored again, the resend was analysed as well as
        the original later. The original is taken up now and the resend waits for its
        analysis, as one arriving during it does (``analysing_stored``); its
        ``duplicate`` event is committed already."""
        # This resend was in flight itself until its commit found the original: resends
        # that came meanwhile wait for it, and now for the original's analysis with it.
        own = self._inflight.get(key)
        if own is not None and own.record is record:
            del self._inflight[key]
        if key not in self._inflight and self.take_up is not None:
            self.take_up(duplicate.original_id)  # in flight from here (analysing_stored)
        inflight = self._inflight.get(key)
        if own is not None and inflight is not None:
            inflight.waiting.extend(own.waiting)
        if inflight is None:
            # Not taken up (stopping; or its analysis could not be recorded this run): AR,
            # so that the sender sends it again, and nothing recorded on the original.
            from ri_engine.errors import AnalysisFailure

            decision = decide(AnalysisFailure("analysis not started"))
            code, _, ack = self._built_ack(decision, header, record.charset or "utf-8")
            self._log_duplicate(header, record.conn_id, record.peer, duplicate.original_id,
                                code, duplicate.same_content, started)
            for waiting in own.waiting if own is not None else ():
                waiting.callback(_Answer(ack, duplicate.original_id, code))
            return ack
        answered = self._wait_on(inflight, header, record.conn_id, record.peer)

        def answer(result: _Answer) -> bytes | None:
            self._log_duplicate(header, record.conn_id, record.peer, result.message_id,
                                result.ack_code, duplicate.same_content, started, pending=True)
            return result.ack

        return answered.addCallback(answer)

    def _answer_unanswered(self, duplicate: Duplicate, record: ReceivedMessage,
                           key: tuple[str, str, str], header: Any, started: float
                           ) -> defer.Deferred:
        """``ack_after = "analysis"``: the original was analysed but never answered (an
        earlier run stopped first, or its ACK could not be recorded) and the sender sent
        it again.  The resend gets the ACK the original earned, AA (CA), recorded on the
        original so that later resends are answered with it; nothing is analysed again."""
        def sent(code: str) -> None:
            self._log_duplicate(header, record.conn_id, record.peer, duplicate.original_id,
                                code, duplicate.same_content, started)

        return self._send_recorded_ack(duplicate.original_id, decide(None), record, key, header,
                                       started, sent)

    def analysing_stored(self, message: AcceptedMessage, stored: Any,
                         analysed: defer.Deferred) -> None:
        """A stored message is analysed again without a sender waiting (resumed at start:
        ``gateway.feed``); ``analysed`` fires with its final status.

        With ``ack_after = "analysis"`` its sender was never answered, and resends it: a
        resend arriving meanwhile was not a duplicate (the stored message was neither
        answered nor analysed yet), so it was stored and analysed a second time. It now
        waits for this analysis as for a live original's, and gets the ACK the analysis
        earns, recorded on the stored message as for a resend arriving later
        (``_answer_unanswered``). Without a resend nothing is recorded: the next one is
        answered from the stored status.
        """
        header = message.header
        if self.ack_after != "analysis" or header is None:
            return
        key = (header.sending_application, header.sending_facility, header.control_id)
        if key in self._inflight:
            return
        record = ReceivedMessage(raw=stored.raw, received_at="", status=stored.status,
                                 ack_code=None, ack_payload=None, control_id=header.control_id,
                                 message_type=header.message_code, charset=stored.charset)
        inflight = self._inflight[key] = _InFlight(record)
        started = self.clock()

        def finished(status: Any) -> Any:
            if self._inflight.get(key) is not inflight:
                return status
            if not inflight.waiting:
                del self._inflight[key]
                return status
            # Each waiting resend logs its own line once answered (_inflight_duplicate).
            self._send_recorded_ack(message.message_id, _analysis_decision(status), record, key,
                                    header, started, lambda code: None)
            return status

        analysed.addBoth(finished)

    def _answer_waiting(self, key: tuple[str, str, str], record: ReceivedMessage,
                        ack: bytes | None, message_id: int | None, ack_code: str | None) -> None:
        """``record`` has been answered: release the duplicates that waited for it.

        Only when ``record`` is the in-flight message of its key: a message with the same
        key that was not accepted (committed or failing meanwhile) must not answer them.
        """
        inflight = self._inflight.get(key)
        if inflight is None or inflight.record is not record:
            return
        del self._inflight[key]
        answer = _Answer(ack, message_id, ack_code)
        for waiting in inflight.waiting:
            waiting.callback(answer)

    def _inflight_duplicate(self, key: tuple[str, str, str], header: Any, payload: bytes,
                            conn: Any, received: datetime, started: float) -> defer.Deferred:
        """The original is still being committed: once it is answered, audit this duplicate
        as if it had arrived later (the event points at the stored original, so the audit
        views show its sender, type and ACK) and answer with the original's ACK."""
        inflight = self._inflight[key]
        answered = self._wait_on(inflight, header, conn.conn_id, conn.peer)
        received_at = utc_now(received)

        def audit(answer: _Answer) -> defer.Deferred:
            same: bool | None = None
            if answer.message_id is not None:
                op = duplicate_op(answer.message_id, payload, received_at, header.control_id,
                                  conn.conn_id, conn.peer)
            else:
                # The original could not be stored: nothing to point at, so the event
                # carries what is known here (the same fields, compared in memory).
                same = payload == inflight.record.raw
                op = event_op("duplicate", header.control_id, time=received_at,
                              conn_id=conn.conn_id, peer=conn.peer, size=len(payload),
                              same_content=same, ack_code=answer.ack_code)
            return self.committer.submit(op).addBoth(logged, answer, same)

        def logged(result: Any, answer: _Answer, same: bool | None) -> bytes | None:
            ack_code = answer.ack_code
            if isinstance(result, Duplicate):
                ack_code, same = result.ack_code, result.same_content
            elif isinstance(result, Failure):
                # Not processed either way; the sender still gets the original's ACK.
                self.log.error("audit.write_failed", audit_event="duplicate",
                               error=result.type.__name__, reason=audit_reason(result.value))
            self._log_duplicate(header, conn.conn_id, conn.peer, answer.message_id, ack_code,
                                same, started, pending=True)
            return answer.ack

        return answered.addCallback(audit)

    def _wait_on(self, inflight: _InFlight, header: Any, conn_id: Any, peer: Any
                 ) -> defer.Deferred:
        """A Deferred fired with the :class:`_Answer` of ``inflight``'s original."""
        answered: defer.Deferred = defer.Deferred()
        inflight.waiting.append(answered)
        # The ACK may take as long as the original's analysis: say why it has not left.
        self.log.info("hl7.duplicate_waiting", control_id=header.control_id, conn_id=conn_id,
                      peer=peer)
        return answered

    def _log_duplicate(self, header: Any, conn_id: Any, peer: Any, message_id: int | None,
                       ack_code: str | None, same: bool | None, started: float,
                       pending: bool | None = None) -> None:
        if self.metrics is not None:
            self.metrics.inc("ri_gateway_duplicates_total")
        # message_id is the original's, as in the audit event, to find what was answered.
        self.log.info("hl7.message", control_id=header.control_id, conn_id=conn_id, peer=peer,
                      message_id=message_id, message_type=header.message_code,
                      outcome="duplicate", ack_code=ack_code, same_content=same,
                      pending=pending, duration_ms=self._ms(started))

    def _unreadable(self, payload: bytes, text: str, decoded: Any, exc: UnreadableHeader,
                    conn: Any, received: datetime, started: float) -> defer.Deferred:
        decision = decide(exc)
        ack_id = self.ids()
        ack_text = build_unreadable_ack(text, decision.code, ack_id, received, exc,
                                        charset=decoded.charset)
        ack = encode_message(ack_text, decoded.charset) if ack_text is not None else None
        control_id = _acked_control_id(ack_text) if ack_text is not None else None
        record = ReceivedMessage(
            raw=payload, received_at=utc_now(received), conn_id=conn.conn_id, peer=conn.peer,
            status="rejected", ack_code=decision.code if ack is not None else None,
            ack_payload=ack, ack_control_id=ack_id if ack is not None else None,
            control_id=control_id, charset=decoded.charset, error_code=exc.err_code,
            error_text=exc.message)
        d = self.committer.submit(received_op(record, unreadable=True))

        def answer(result: Any) -> bytes:
            stored = not isinstance(result, Failure)
            self._count("unreadable", record.ack_code or "none")
            self.log.warning("hl7.message", control_id=control_id, conn_id=conn.conn_id,
                             peer=conn.peer, outcome="unreadable", ack_code=record.ack_code,
                             error_code=exc.err_code, stored=stored,
                             duration_ms=self._ms(started))
            if ack is None:
                raise UnanswerableMessage("MSH unreadable and no control id to answer")
            return ack

        return d.addBoth(answer)

    # --- small things --------------------------------------------------------------------

    def _built_ack(self, decision: AckDecision, header: Any, charset: str,
                   now: datetime | None = None) -> tuple[str, str, bytes]:
        """The ACK ``decision`` gives the message of ``header``, for the mode its MSH-15/16
        ask: (code, our new control id, the ACK encoded in ``charset``)."""
        code = decision.code_for(enhanced_mode(header.accept_ack_type,
                                               header.application_ack_type))
        ack_id = self.ids()
        ack = _ack(header, code, ack_id, self.now() if now is None else now, decision.error,
                   charset)
        return code, ack_id, ack

    def _count(self, message_type: str | None, ack_code: str | None) -> None:
        if self.metrics is not None:
            self.metrics.inc("ri_gateway_messages_total",
                             {"message_type": _type_label(message_type or "unknown"),
                              "ack_code": ack_code or "none"})

    def _ms(self, started: float) -> float:
        return round((self.clock() - started) * 1000, 3)


def _analysis_decision(status: Any) -> AckDecision:
    """The ACK a message earns with ``ack_after = "analysis"``, from the pipeline's final
    status: AA once analysed (or skipped); AE when the mapping found bad content or the
    engine refused the report, AR when analysis failed."""
    from ri_engine.errors import AnalysisFailure, RequestError

    ok = status in ("analysed", "skipped")
    # What made it fail (pipeline.AnalysisStatus): the report's content found by the
    # mapping after the commit, or the engine refusing it, is the sender's to fix (AE);
    # anything else is ours (AR).
    error = None if ok else getattr(status, "error", None)
    if not ok and not isinstance(error, (HL7Error, RequestError)):
        error = AnalysisFailure("analysis failed")
    return decide(error)


def _in_thread(fn: Callable[[], Any]) -> defer.Deferred:
    from twisted.internet.threads import deferToThread

    return deferToThread(fn)


def _ack(header: Any, code: str, control_id: str, now: datetime, error: HL7Error | None,
         charset: str) -> bytes:
    """Our ACK as sent: encoded in ``charset``, the charset its MSH-18 names."""
    return encode_message(build_ack(header, code, control_id=control_id, now=now, error=error,
                                    charset=charset), charset)


@functools.lru_cache(maxsize=256)
def _type_label(message_type: str) -> str:
    """The ``message_type`` label: MSH-9 comes from the sender, so it is cut short and
    kept printable."""
    return "".join(c for c in message_type[:16] if c.isprintable())


def _storage_error(failure: Failure) -> BaseException:
    from .errors import AuditError

    return AuditError(f"audit write failed: {failure.type.__name__}")
