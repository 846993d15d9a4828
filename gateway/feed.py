"""Stored messages fed to the analysis pipeline a few at a time: resume and replay.

The gateway analyses two kinds of stored message without a sender waiting for them: those
whose analysis never finished (status ``received`` at start, taken up by :class:`Resume`)
and those an admin asked to replay (status ``replay``, :class:`gateway.replay.ReplayPoller`).
Either can be thousands of messages: a crash under load, ``replay --status analysed``.
Handed to the pipeline in one go, all of them would be read from the database (and, with
``map_before_ack = "full"``, mapped on the reactor) and held in its backlog at once, and
every report arriving meanwhile would wait behind all of them: with ``ack_after =
"analysis"``, its ACK too, past the sender's timeout.

:class:`StoredFeed` keeps at most ``batch`` of them in the pipeline (its ``max_in_flight``),
oldest first, and takes up the next on a later reactor turn as soon as one is recorded, so
a live report waits behind no more than ``batch`` stored messages.  The feeds of one
gateway share those places (:class:`FeedRoom`): a resume and a replay running together
used to keep ``batch`` each in the pipeline, twice what a live report was to wait behind.  A message
is handed over once per process: one whose result could not be recorded (a database error)
keeps its status and is left to the next start rather than retried against a broken
database.  Stopping the feed takes nothing more up; what was not taken up keeps its status,
and the next start takes it up.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer

from .audit import AuditLog, StoredMessage, event_op
from .logging import get_logger
from .pipeline import AcceptedMessage

__all__ = ["FeedRoom", "Resume", "StoredFeed", "stored_patient_keys"]

Reread = Callable[[bytes, str | None], tuple[Any, str, Any]]


class FeedRoom:
    """The places in the pipeline that the stored-message feeds of one gateway share:
    at most ``size`` of their messages are in it at once, whichever feed took them up."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.feeds: list[StoredFeed] = []

    def free(self) -> int:
        return self.size - sum(len(feed._active) for feed in self.feeds)

    def freed(self, by: StoredFeed, *, recorded: bool) -> None:
        """A message of ``by`` left the pipeline: each feed that was short of room looks
        again (``by`` only when it was recorded: a database error is not hammered)."""
        for feed in self.feeds:
            if feed is not by or recorded:
                feed._next()


class StoredFeed(Service):
    """Hands the stored messages of one ``status`` to the pipeline, ``batch`` at a time.

    ``reread(raw, charset) -> (header, text, reports)`` decodes (and, where the receiver
    maps, maps) the stored bytes again.  A message that no longer reads is recorded
    ``failed`` (``analysis_failed`` with ``stage``); the others get the ``event`` and go to
    the pipeline.  Subclasses say which messages wait and what each carries.
    """

    status: str  # messages.status of the messages this feed takes up
    stage: str  # "resume", "replay": the failed stage of an unreadable one, and the log name
    # The audit event recorded as each one is taken up (None: none, gateway.overflow).
    event: str | None

    def __init__(self, audit: AuditLog, committer: Any, pipeline: Any, reread: Reread, *,
                 clock: Any = None, log: Any = None, batch: int | None = None,
                 room: FeedRoom | None = None,
                 on_taken: Callable[[AcceptedMessage, StoredMessage, defer.Deferred], Any]
                 | None = None) -> None:
        self.audit = audit
        # Told of each message handed to the pipeline, with its final-status Deferred:
        # the receiver makes a resend of it wait for that analysis (Receiver.analysing_stored).
        self.on_taken = on_taken
        self.committer = committer
        self.pipeline = pipeline
        self.reread = reread
        # None: take the next message up at once (tests); a reactor: on a later turn.
        self.clock = clock
        self.log = log if log is not None else get_logger(f"gateway.{self.stage}")
        # Stored messages in the pipeline at once, with the other feeds sharing ``room``:
        # live reports wait behind no more than these.
        if room is None:
            room = FeedRoom(batch or int(getattr(pipeline, "max_in_flight", 1) or 1))
        self.room = room
        room.feeds.append(self)
        self.batch = room.size
        self._active: set[int] = set()  # handed to the pipeline, not yet recorded
        self._held: set[int] = set()  # not recorded (database error): left to the next start
        self._polling = False
        self._again = False  # one was recorded while polling: look once more
        self._next_pending = False  # a look for the next one is scheduled
        self._more = False  # the last look took all it had room for: more may wait
        self._stopped = False

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        super().startService()
        self._stopped = False

    def stopService(self) -> None:  # noqa: N802 - Twisted's name
        super().stopService()
        self._stopped = True  # what waits keeps its status for the next start

    def poll(self, *, refill: bool = False) -> list[defer.Deferred]:
        """Hand waiting messages to the pipeline while fewer than ``batch`` of them are in
        it; their final-status Deferreds (for tests).  ``refill``: after one was recorded."""
        if self._polling:  # one recorded synchronously inside this poll
            self._again = True
            return []
        self._polling = True
        started: list[defer.Deferred] = []
        try:
            while True:
                self._again = False
                started.extend(self._take())
                if not self._again:
                    break
        finally:
            self._polling = False
        self._taken(len(started), refill)
        return started

    def _taken(self, count: int, refill: bool) -> None:
        """``count`` messages were handed over by one poll (0: none waited or there was no
        room); for logs and metrics."""

    def _waiting(self, limit: int) -> list[StoredMessage]:
        """The first ``limit`` messages with :attr:`status`, oldest first."""
        return self.audit.with_status(self.status, limit=limit)

    def _fields(self, stored: StoredMessage) -> dict[str, Any]:
        """What the event records and the :class:`AcceptedMessage` carries for ``stored``."""
        return {}

    def _message(self, stored: StoredMessage, read: tuple[Any, str, Any],
                 fields: dict[str, Any]) -> AcceptedMessage:
        return AcceptedMessage.from_stored(stored, read, **fields)

    def _take(self) -> list[defer.Deferred]:
        if self._stopped:
            return []
        room = self.room.free()
        if room <= 0:
            self._more = True  # looked at again when a place is freed (FeedRoom.freed)
            return []
        skip = self._active | self._held
        try:
            chosen = [stored for stored in self._waiting(room + len(skip))
                      if stored.id not in skip][:room]
            waiting = [(stored, self._fields(stored)) for stored in chosen]
        # Locked or unreadable now: the replay timer looks again, the overflow a second
        # later; a resume does at the next message recorded, or leaves the rest to the
        # next start.
        except sqlite3.Error as exc:
            self.log.warning(f"{self.stage}.poll_failed", error=type(exc).__name__)
            self._poll_failed()
            return []
        self._more = len(waiting) == room
        return [self._start(stored, fields) for stored, fields in waiting]

    def _poll_failed(self) -> None:
        """The database could not be read for the next messages."""

    def _next(self) -> None:
        """One was recorded: take up the next (on a later reactor turn, so that what
        arrived meanwhile goes first)."""
        if self._stopped or not self._more:
            return
        if self.clock is None:
            self.poll(refill=True)
        elif not self._next_pending:
            self._next_pending = True
            self.clock.callLater(0, self._poll_later)

    def _poll_later(self) -> None:
        self._next_pending = False
        if not self._stopped:
            self.poll(refill=True)

    def _start(self, stored: StoredMessage, fields: dict[str, Any]) -> defer.Deferred:
        self._active.add(stored.id)
        try:
            read = self.reread(stored.raw, stored.charset)
        except Exception as exc:  # noqa: BLE001 - recorded; the others go on
            d = self.pipeline.record_unreadable(stored, exc, stage=self.stage)
            # Recorded failed, with nothing to send: its patient's next report need not wait.
            self.pipeline.unexpected(stored.id)
        else:
            if self.event is not None:
                self.committer.submit(event_op(self.event, stored.control_id, stored.id,
                                               **fields))
            # Not an arrival: the quiet period waits out senders, not the gateway's own work.
            message = self._message(stored, read, fields)
            d = self.pipeline.submit(message, arrival=False)
            if self.on_taken is not None:
                self.on_taken(message, stored, d)

        def finished(status: Any) -> Any:
            self._active.discard(stored.id)
            recorded = isinstance(status, str)
            if not recorded:
                self._held.add(stored.id)
            self.room.freed(self, recorded=recorded)
            return status

        return d.addBoth(finished)


def stored_patient_keys(default_charset: str = "utf-8") -> Callable[[bytes, str | None],
                                                                   tuple[str, ...]]:
    """``keys_of(raw, charset)``: the patients (``mappings.patient_key``) of a stored
    message, read without mapping it."""
    from mappings.decoding import decode_message
    from mappings.patient_key import patient_keys

    def keys_of(raw: bytes, charset: str | None) -> tuple[str, ...]:
        return patient_keys(decode_message(raw, charset or default_charset,
                                           normalise=False).text)

    return keys_of


class Resume(StoredFeed):
    """At start, takes up the messages whose analysis never finished (``received``).

    Only those stored before the start: a report received while the backlog drains is
    ``received`` too, but the receiver has already handed it to the pipeline.  The backlog
    is taken up once; a message that was not recorded waits for the next start.

    A live report must not overtake a stored report of its patient that the resume has
    not reached yet (a correction sent before the report it corrects).  So at start the
    patients of every stored report are read (``keys_of``: its PID-3s, not the whole
    message), ``scan_chunk`` messages per reactor turn so that the listener is not held
    up by thousands of them, and each keeps its place in its patients' queues
    (``AnalysisPipeline.expect``); the pipeline starts no message submitted before they
    are all read.  Places not taken when the resume is over are given up.
    """

    status, stage, event = "received", "resume", "resumed"

    def __init__(self, *args: Any,
                 keys_of: Callable[[bytes, str | None], Sequence[str]] | None = None,
                 scan_chunk: int = 500, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setName("resume")
        self.keys_of = keys_of if keys_of is not None else stored_patient_keys()
        self.scan_chunk = scan_chunk
        self._scanned = 0  # the newest stored message whose patients were read
        self._last_id = 0  # the newest message stored before the start
        self._handed = 0
        self._done = False

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        super().startService()
        try:
            (last,) = self.audit.conn.execute("SELECT max(id) FROM messages").fetchone()
            (count,) = self.audit.conn.execute(
                "SELECT count(*) FROM messages WHERE status = ?", (self.status,)).fetchone()
        except sqlite3.Error as exc:  # the next start tries again
            self.log.error("analysis.resume_failed", error=type(exc).__name__)
            return
        self._last_id = last or 0
        if count:
            self.log.info("analysis.resuming", messages=count, batch=self.batch)
            self.pipeline.keys_pending()
            self._scan()
        self.poll()

    def _scan(self) -> None:
        """Read the patients of the next ``scan_chunk`` stored reports; on a later reactor
        turn, the next chunk, until all are read."""
        while not self._stopped:
            try:
                rows = self.audit.conn.execute(
                    "SELECT id, raw, charset FROM messages WHERE id > ? AND id <= ? "
                    "AND status = ? AND message_type LIKE 'ORU%' ORDER BY id LIMIT ?",
                    (self._scanned, self._last_id, self.status, self.scan_chunk)).fetchall()
            except sqlite3.Error as exc:
                # The rest are not ordered before live reports of their patients.
                self.log.warning("resume.scan_failed", error=type(exc).__name__)
                break
            for message_id, raw, charset in rows:
                try:
                    keys = self.keys_of(bytes(raw), charset)
                except Exception:  # noqa: BLE001 - no longer decodes: recorded failed when taken up
                    keys = ()
                self.pipeline.expect(message_id, keys)
                self._scanned = message_id
            if len(rows) < self.scan_chunk:
                break
            if self.clock is not None:
                self.clock.callLater(0, self._scan)
                return
        self.pipeline.keys_known()
        if self._done:  # over before its last chunk was read: those it did not take up
            self.pipeline.no_more_expected(self._last_id)

    def _poll_failed(self) -> None:
        if not self._active:
            self._more = False  # no message recorded will look again: the next start will

    def take_up(self, message_id: int) -> None:
        """Hand one waiting message to the pipeline now, out of turn: its sender resent it
        and the resend waits for its analysis (``ack_after = "analysis"``: the receiver's
        ``take_up``). Only one of the backlog stored before the start (a message received
        since is the receiver's), not one already handed over, nor one whose result could
        not be recorded (left to the next start), nor once stopped.

        It goes in even when the feeds' shared room is full, since its sender waits as for
        a live report: the stored messages in the pipeline then exceed the room by one for
        each such resend.  Counted in ``_active``, it holds a place until it is recorded,
        and the feeds take nothing more up until their total is below the room again; it
        is counted among the messages ``analysis.resumed`` reports."""
        if (self._stopped or message_id > self._last_id or message_id in self._active
                or message_id in self._held):
            return
        try:
            stored = self.audit.stored(message_id)
        except sqlite3.Error as exc:
            self.log.warning(f"{self.stage}.take_up_failed", error=type(exc).__name__)
            return
        if stored is not None and stored.status == self.status:
            self._handed += 1
            self._start(stored, self._fields(stored))

    def _waiting(self, limit: int) -> list[StoredMessage]:
        # Oldest first, so the messages stored since the start come after every older one:
        # at most ``limit`` rows are read either way.
        return [stored for stored in super()._waiting(limit) if stored.id <= self._last_id]

    def _taken(self, count: int, refill: bool) -> None:
        self._handed += count
        if not self._more and not self._done:
            self._done = True
            # Stored reports no longer waiting (their status changed meanwhile) or left to
            # the next start: their patients' later reports wait for them no more.
            self.pipeline.no_more_expected(self._last_id)
            if self._handed:
                self.log.info("analysis.resumed", messages=self._handed)
