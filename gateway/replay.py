"""Replay: analyse stored messages again (``ri-gateway replay``).

An admin replays a message after fixing what made its analysis fail, after adding a route
that should have received its results, or after an engine upgrade.  Replay is two steps,
so that the command never needs the gateway to be running:

1. :func:`request_replay` (the CLI, its own database connection) marks the chosen
   messages ``replay`` and records a ``replay_requested`` event saying what the status was
   and what is to be sent downstream again (``deliver``: ``"results"``, the default, the
   result messages only; ``"all"``, alerts too; ``"none"``);
2. :class:`ReplayPoller` (inside the running gateway) finds messages marked ``replay``,
   at start and then every ``interval`` seconds, and hands them to the analysis
   pipeline as :class:`~gateway.pipeline.AcceptedMessage` with ``replay=True``, a few at
   a time (:mod:`gateway.feed`: at most the pipeline's ``max_in_flight`` at once, shared
   with a resume, the next as soon as one is recorded, so reports arriving meanwhile do not
   wait behind the whole replay).  The pipeline replaces the message's inferences (so aggregates count each
   message once; the events keep the history), sets its final status, and routes what
   ``deliver`` names again under the current ``[routes.*]``.  The sender is not told
   anything again: its ACK (and application ACK) went long ago.

Only accepted messages whose analysis has finished (``analysed``, ``skipped``,
``failed``) can be replayed: a rejected message was never accepted (its sender must
send it again) and one still ``received`` is about to be analysed anyway.  A replay that
could not be recorded (a database error) stays ``replay`` and is tried again at the next
start, as an unfinished analysis is.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet import task

from .audit import AuditLog, StoredMessage, chunks, event_op, utc_now
from .feed import Reread, StoredFeed
from .pipeline import AcceptedMessage

__all__ = [
    "ALL", "DELIVERY", "MARK_CHUNK", "NONE", "POLL_INTERVAL", "REPLAY", "REPLAYABLE",
    "RESULTS_ONLY", "ReplayPoller", "ReplayRequest", "request_replay",
]

POLL_INTERVAL = 5.0  # seconds between the running gateway's looks for replays
MARK_CHUNK = 500  # messages marked per transaction (under SQLite's parameter limit too)
# What a replay sends downstream. Results by default: alerts page people, and paging again
# for critical results that were handled when they were new (a replay after an engine
# upgrade, say) is noise at best; an admin who wants them again asks for "all".
ALL, RESULTS_ONLY, NONE = "all", "results", "none"
DELIVERY = (ALL, RESULTS_ONLY, NONE)
REPLAY = "replay"  # messages.status while a replay waits for (or is in) the analysis pool
REPLAYABLE = ("analysed", "skipped", "failed")

# Why a selected message is not marked, by its status.
_REFUSED = {
    "rejected": "rejected at receipt; the sender must send it again",
    "received": "its analysis has not finished yet",
}


@dataclass(frozen=True)
class ReplayRequest:
    """What :func:`request_replay` did for one stored message."""

    message_id: int
    control_id: str | None
    sender: str | None
    status: str  # the status it had
    requested: bool  # marked now (False: already waiting, or refused)
    reason: str | None = None  # why not, when refused
    # A rejected message whose sender sent it again under the same MSH-10 and had it
    # accepted: that resend (this id) is the message to replay, so this one is no failure.
    resent_as: int | None = None
    # Whether the replay that will run sends results and alerts: as requested now, or, for
    # one already waiting, as its earlier request said (a second request does not change it).
    deliver: str | None = None  # one of DELIVERY

    @property
    def waiting(self) -> bool:
        """It will be analysed again: marked now, or already waiting for a replay."""
        return self.requested or self.status == REPLAY


def request_replay(audit: AuditLog, *, control_ids: Sequence[str] = (),
                   statuses: Sequence[str] = (), since: str | None = None,
                   sending_application: str | None = None, sending_facility: str | None = None,
                   deliver: str = RESULTS_ONLY) -> list[ReplayRequest]:
    """Mark the stored messages chosen by the arguments for replay, :data:`MARK_CHUNK` to a
    transaction (a message is marked with its event, or not at all).

    Messages are chosen by MSH-10 (``control_ids``) or, with none given, by status
    (``statuses``, some of :data:`REPLAYABLE`); ``since`` (``received_at`` in the audit's
    ISO 8601 UTC form) and the sender narrow either.  Returns one :class:`ReplayRequest`
    per chosen message, oldest first.
    """
    if not control_ids and not statuses:
        raise ValueError("choose messages by control id or by status")
    where, params = [], []
    if control_ids:
        where.append(f"control_id IN ({', '.join('?' for _ in control_ids)})")
        params.extend(control_ids)
    else:
        where.append(f"status IN ({', '.join('?' for _ in statuses)})")
        params.extend(statuses)
    for column, value in (("sending_application", sending_application),
                          ("sending_facility", sending_facility)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        where.append("received_at >= ?")
        params.append(since)
    sql = ("SELECT id, control_id, sender, status FROM messages "
           f"WHERE {' AND '.join(where)} ORDER BY id")

    chosen = audit.conn.execute(sql, params).fetchall()
    accepted = {(sender, control_id): message_id
                for message_id, control_id, sender, status in chosen if status != "rejected"}
    now = utc_now()

    def op(ids: list[int]) -> Callable[[sqlite3.Connection], list[ReplayRequest]]:
        def mark(conn: sqlite3.Connection) -> list[ReplayRequest]:
            done = []
            # Read again inside the write transaction: the gateway may have moved on since.
            for message_id, control_id, sender, status in conn.execute(
                    "SELECT id, control_id, sender, status FROM messages "
                    f"WHERE id IN ({', '.join('?' * len(ids))}) ORDER BY id", ids):
                done.append(_mark(conn, message_id, control_id, sender, status, accepted,
                                  now, deliver))
            return done
        return mark

    # A few hundred messages per transaction: "--status analysed" over a year's audit log
    # must not hold the write lock for seconds, while the gateway commits each ACK.
    ids = [row[0] for row in chosen]
    return [request for chunk in chunks(ids, MARK_CHUNK) for request in audit.run(op(list(chunk)))]


def _mark(conn: sqlite3.Connection, message_id: int, control_id: str | None, sender: str | None,
          status: str, accepted: dict[tuple[Any, Any], int], now: str, deliver: str
          ) -> ReplayRequest:
    """Mark one message for replay if it can be; what was done."""
    if status == REPLAY:
        return ReplayRequest(message_id, control_id, sender, status, False,
                             deliver=_delivery(conn, message_id))
    if status not in REPLAYABLE:
        resent_as = accepted.get((sender, control_id)) if status == "rejected" else None
        reason = (f"rejected at receipt; the one to replay is its resend, "
                  f"message {resent_as}" if resent_as is not None else _REFUSED.get(status))
        return ReplayRequest(message_id, control_id, sender, status, False, reason, resent_as)
    # Only the status: analysed_at keeps saying when the last analysis finished.
    conn.execute("UPDATE messages SET status = ? WHERE id = ?", (REPLAY, message_id))
    event_op("replay_requested", control_id, message_id, time=now,
             previous_status=status, deliver=deliver)(conn)
    return ReplayRequest(message_id, control_id, sender, status, True, deliver=deliver)


def _delivery(conn: sqlite3.Connection, message_id: int) -> str:
    """What the latest replay request of a message asked to send (one of DELIVERY)."""
    row = conn.execute(
        "SELECT fields FROM events WHERE message_id = ? AND event = 'replay_requested' "
        "ORDER BY id DESC LIMIT 1", (message_id,)).fetchone()
    value = json.loads(row[0]).get("deliver", ALL) if row else ALL
    if isinstance(value, bool):  # a request recorded before the three modes: all or none
        return ALL if value else NONE
    return value if value in DELIVERY else ALL


class ReplayPoller(StoredFeed):
    """Hands messages marked ``replay`` to the pipeline, at start and every ``interval`` s,
    at most ``batch`` at a time (:class:`gateway.feed.StoredFeed`).

    A message is handed over once; it is looked at again only after its replay was
    recorded, or at the next start when recording failed (so a broken database is not
    hammered every few seconds).
    """

    status, stage, event = REPLAY, "replay", "replayed"

    def __init__(self, audit: AuditLog, committer: Any, pipeline: Any, reread: Reread, *,
                 clock: Any = None, interval: float = POLL_INTERVAL, log: Any = None,
                 metrics: Any = None, batch: int | None = None, room: Any = None) -> None:
        super().__init__(audit, committer, pipeline, reread, clock=clock, log=log, batch=batch,
                         room=room)
        self.setName("replay")
        self.interval = interval
        self.metrics = metrics
        self._loop: task.LoopingCall | None = None

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        super().startService()
        self._loop = task.LoopingCall(self.poll)
        if self.clock is not None:
            self._loop.clock = self.clock
        self._loop.start(self.interval, now=True).addErrback(
            lambda failure: self.log.error("replay.poll_stopped", error=failure.type.__name__))

    def stopService(self) -> None:  # noqa: N802 - Twisted's name
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def _taken(self, count: int, refill: bool) -> None:
        if not count:
            return
        # After a replay was recorded: at debug, not once per message at info.
        (self.log.debug if refill else self.log.info)("replay.started", messages=count)
        if self.metrics is not None:
            self.metrics.inc("ri_gateway_replays_total", value=count)

    def _fields(self, stored: StoredMessage) -> dict[str, Any]:
        return {"deliver": _delivery(self.audit.conn, stored.id)}

    def _message(self, stored: StoredMessage, read: tuple[Any, str, Any],
                 fields: dict[str, Any]) -> AcceptedMessage:
        return AcceptedMessage.from_stored(stored, read, replay=True, **fields)
