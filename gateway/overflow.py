"""Live reports that wait for analysis in the database only, once the backlog is full.

With ``ack_after = "persistence"`` the ACK does not wait for analysis, so a sender can
deliver faster than the engine analyses: an interface engine flushing the queue it kept
during an outage sends thousands of reports a second for minutes. Each report waiting in
the pipeline's backlog holds its text and header in memory (about 8 KB for a 3 KB
report), and the backlog had no bound: a long enough flush ended in the out-of-memory
killer. The message is committed before its ACK, so nothing was lost, but the gateway
was down until restarted.

Beyond ``[analysis] max_backlog`` reports in the backlog, a routine report (not STAT or
ASAP) is kept in the database only: :class:`Overflow` holds its id and the pipeline its
place in its patients' queues (``AnalysisPipeline.expect``, as for the backlog resumed at
a start), and it is read back, oldest first, as places in the pipeline come free (the
same :class:`gateway.feed.FeedRoom` as the resume and replays). While any wait there,
the next routine reports go there too, so that they keep their order. STAT and ASAP
reports still go to the backlog, ahead of routine ones: a stored report of their patient
goes first, taken up out of turn (:meth:`Overflow.take_up`).  What waits here at a stop
is ``received`` in the database, and the next start resumes it.
"""

from __future__ import annotations

import itertools
import sqlite3
import time
from typing import Any

from twisted.internet import defer

from .audit import StoredMessage
from .feed import StoredFeed

__all__ = ["Overflow"]

WAITING_METRIC = "ri_gateway_analysis_waiting_in_database"
WARN_EVERY = 60.0  # seconds between two analysis.overflow warnings
RETRY_AFTER = 1.0  # seconds before a failed read of the waiting reports is tried again


class Overflow(StoredFeed):
    """The live reports the pipeline could not hold (:meth:`hold`), handed back to it a
    few at a time, oldest first."""

    status, stage, event = "received", "overflow", None

    def __init__(self, *args: Any, metrics: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setName("overflow")
        self.metrics = metrics
        # message id -> the pipeline's final-status Deferred for it; oldest first.
        self._waiting_ids: dict[int, defer.Deferred] = {}
        # Reports that waited here since the last analysis.overflow_cleared, whether the
        # warning that starts it was logged, and when it last was.
        self._episode = 0
        self._warned = False
        self._warned_at: float | None = None
        self._retry_pending = False
        self._gauge()  # at 0 from the start: an alert rule on it sees a series at once

    @property
    def waiting(self) -> int:
        """Reports waiting here (in the database only)."""
        return len(self._waiting_ids)

    def hold(self, message_id: int, done: defer.Deferred) -> None:
        """Keep ``message_id`` (committed, ``received``) here until a place is free;
        ``done`` fires with its final status once it is analysed and recorded."""
        if not self._warned:
            now = self._now()
            # Once a minute at most: a feed just at the bound fills and empties this often.
            # Looked at again at each report held meanwhile: an overflow that starts within
            # the minute and lasts is warned about once the minute is over.
            if self._warned_at is None or now - self._warned_at >= WARN_EVERY:
                self.log.warning("analysis.overflow", max_backlog=self.pipeline.max_backlog)
                self._warned, self._warned_at = True, now
        self._waiting_ids[message_id] = done
        self._episode += 1
        self._gauge()
        self._more = True
        self._next()

    def take_up(self, message_id: int) -> None:
        """Hand ``message_id`` to the pipeline now, out of turn: a STAT or ASAP report of
        its patient, in the backlog, waits for it (``AnalysisPipeline._pull_forward``)."""
        if self._stopped or message_id not in self._waiting_ids:
            return
        try:
            stored = self.audit.stored(message_id)
        except sqlite3.Error as exc:  # taken up in its turn, or at the next start
            self.log.warning("overflow.take_up_failed", error=type(exc).__name__)
            return
        if stored is None or stored.status != self.status:
            self._gone(message_id, stored)
        else:
            self._start(stored, self._fields(stored))

    def _waiting(self, limit: int) -> list[StoredMessage]:
        # ``limit`` counts those in the pipeline already (StoredFeed._take skips them), which
        # are no longer among the waiting ids here: read no more than there is room for.
        wanted = max(0, limit - len(self._active) - len(self._held))
        found, gone = [], []
        for message_id in itertools.islice(self._waiting_ids, wanted):
            stored = self.audit.stored(message_id)
            if stored is None or stored.status != self.status:
                gone.append((message_id, stored))
            else:
                found.append(stored)
        for message_id, stored in gone:
            self._gone(message_id, stored)
        return found

    def _gone(self, message_id: int, stored: StoredMessage | None) -> None:
        """``message_id`` is no longer waiting for analysis (purged, or an admin's replay
        took it): its patient's next reports need not wait for it."""
        done = self._waiting_ids.pop(message_id)
        self.pipeline.unexpected(message_id)
        self._after_handover()
        done.callback(stored.status if stored is not None else None)

    def _start(self, stored: StoredMessage, fields: dict[str, Any]) -> defer.Deferred:
        done = self._waiting_ids.pop(stored.id, None)
        d = super()._start(stored, fields)
        self._after_handover()
        if done is not None:
            def passed_on(result: Any) -> Any:
                done.callback(result)
                return result

            d.addBoth(passed_on)
        return d

    def _poll_failed(self) -> None:
        # Otherwise looked at again only when a stored report is recorded or a live one is
        # held here: with neither (the flood over) the reports waiting here waited for the
        # next arrival, or a restart.
        if self.clock is not None and not self._retry_pending:
            self._retry_pending = True
            self.clock.callLater(RETRY_AFTER, self._retry)

    def _retry(self) -> None:
        self._retry_pending = False
        self._next()

    def _taken(self, count: int, refill: bool) -> None:
        self._more = bool(self._waiting_ids)  # looked at again as places come free

    def _after_handover(self) -> None:
        self._gauge()
        if not self._waiting_ids and self._warned:
            self.log.info("analysis.overflow_cleared", reports=self._episode)
            self._episode, self._warned = 0, False

    def _now(self) -> float:
        return self.clock.seconds() if self.clock is not None else time.monotonic()

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.set(WAITING_METRIC, len(self._waiting_ids))
