"""AnalysisPipeline under random schedules: no patient's queue is left stuck, and each
patient's reports are recorded in the order they took their places.

Each seed draws a schedule: live reports of one, two or no patients (several PIDs,
several PID-3 repetitions), of every priority, replays among them, some that fail mapping;
a stored backlog whose patients are read at start (``expect``) and which is handed over
oldest first while live reports arrive, some of it never (its status changed); analyses
that finish in any order, succeed, are refused, time out or lose their worker (tried
again alone); commits that finish in any order or fail; and for some seeds a stop.  The analyzer
and the committer are held, so the test decides every order.
"""

from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass, field

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from gateway.analysis import AnalysisTimedOut, WorkerDied
from gateway.inputs import TextMetadata, text_request
from gateway.pipeline import AcceptedMessage, AnalysisPipeline
from ri_engine.errors import AnalysisFailure

from gateway_fake_engine import FakeEngine
from gateway_samples import FakeReport

MRNS = ("M1", "M2", "M3", "M4")


class RandomAnalyzer:
    """Analyses held until the schedule ends one, with the outcome it draws."""

    workers = 2

    def __init__(self):
        self.engine = FakeEngine()
        self.held: list[tuple[str, defer.Deferred]] = []
        self.started: list[str] = []

    def analyze(self, data, alone=None):
        name = data.patients[0].patient_documents[0].content.value
        self.started.append(name)
        d = defer.Deferred()
        self.held.append((name, d))
        return d

    def end(self, rng: random.Random) -> None:
        name, d = self.held.pop(rng.randrange(len(self.held)))
        outcome = rng.random()
        if outcome < 0.08:  # every analysis in the pool fails with its worker
            held, self.held = self.held, []
            for _, each in [(name, d), *held]:
                each.errback(WorkerDied("analysis worker died"))
        elif outcome < 0.12:
            d.errback(AnalysisTimedOut("analysis took too long"))
        elif outcome < 0.2:
            d.errback(AnalysisFailure("refused"))
        else:
            d.callback(self.engine.analyze(text_request(name, TextMetadata())))


class HeldCommitter:
    """Commits that finish when the schedule says, in any order."""

    def __init__(self):
        self.held: list[defer.Deferred] = []

    def submit(self, op):
        d = defer.Deferred()
        self.held.append(d)
        return d

    def end(self, rng: random.Random) -> None:
        d = self.held.pop(rng.randrange(len(self.held)))
        if rng.random() < 0.05:  # the database failed: left for the next start
            d.errback(sqlite3.OperationalError("database is locked"))
        else:
            d.callback(None)


@dataclass
class Sent:
    message: AcceptedMessage
    patients: tuple[str, ...]
    done: list = field(default_factory=list)


def _message(mid: int, rng: random.Random, *, replay: bool = False
             ) -> tuple[AcceptedMessage, tuple[str, ...]]:
    cid = f"C{mid}"
    pids = []
    for n in range(rng.choice((0, 1, 1, 1, 2))):
        reps = rng.sample(MRNS, rng.choice((1, 1, 2)))
        # One patient written in several ways: with or without the authority, its OID.
        pid3 = "~".join(rng.choice((f"{m}", f"{m}^^^HOSP^MR", f"{m}^^^HOSP&1.2.3&ISO^MR"))
                        for m in reps)
        pids.append((pid3, reps))
    priority = rng.choice("RRRSA")
    unmappable = rng.random() < 0.1
    segments = [f"MSH|^~\\&|RIS|HOSP|RIGW|HOSP|20240115||ORU^R01|{cid}|P|2.5.1"]
    for n, (pid3, _) in enumerate(pids, 1):
        segments.append(f"PID|{n}||{pid3}")
        segments.append(f"TQ1|1||||||||{priority}")
        if not unmappable:
            segments.append(f"OBR|{n}|P|F|X")
    text = "\r".join(segments) + "\r"
    reports = None if unmappable else (FakeReport(request=text_request(cid, TextMetadata())),)
    patients = tuple(dict.fromkeys(m for _, reps in pids for m in reps))
    return AcceptedMessage(mid, cid, None, text, reports, replay=replay), patients


def _run(seed: int, stop: bool) -> None:
    rng = random.Random(seed)
    clock = Clock()
    analyzer, committer = RandomAnalyzer(), HeldCommitter()
    recorded: list[int] = []  # message ids, in the order their results went to be committed
    pipeline = AnalysisPipeline(analyzer, committer, reactor=clock, clock=clock.seconds,
                                hooks=[lambda m, outcomes: recorded.append(m.message_id) or []],
                                max_in_flight=rng.choice((1, 2, 4)))
    # The stored backlog: its patients read at start, some of it never handed over.
    stored = [(*_message(mid, rng), rng.random() < 0.15) for mid in range(1, rng.randrange(12))]
    last_stored = len(stored)  # the newest id stored before the start
    pipeline.keys_pending()
    for message, patients, _ in stored:
        keys = sorted({key for key in patients})
        pipeline.expect(message.message_id, keys)
    sent: dict[int, Sent] = {}
    places: list[int] = [m.message_id for m, _, gone in stored if not gone]  # order of places
    live: list[int] = []
    next_id = 100
    keys_known = False
    stopped = False
    for _ in range(rng.randrange(40, 120)):
        action = rng.random()
        if action < 0.25 and next_id < 140:
            message, patients = _message(next_id, rng, replay=rng.random() < 0.1)
            next_id += 1
            sent[message.message_id] = Sent(message, patients)
            live.append(message.message_id)
            pipeline.submit(message, arrival=not message.replay).addBoth(
                sent[message.message_id].done.append)
        elif action < 0.35 and stored:
            message, patients, gone = stored.pop(0)
            if not gone:
                sent[message.message_id] = Sent(message, patients)
                pipeline.submit(message, arrival=False).addBoth(
                    sent[message.message_id].done.append)
            if not stored:
                pipeline.no_more_expected(last_stored)
        elif action < 0.4 and not keys_known:
            keys_known = True
            pipeline.keys_known()
        elif action < 0.7 and analyzer.held:
            analyzer.end(rng)
        elif committer.held:
            committer.end(rng)
        if stop and not stopped and rng.random() < 0.01:
            stopped = True
            pipeline.stop()
        clock.advance(0)
    if not keys_known:
        pipeline.keys_known()
    while stored:
        message, patients, gone = stored.pop(0)
        if not gone:
            sent[message.message_id] = Sent(message, patients)
            pipeline.submit(message, arrival=False).addBoth(sent[message.message_id].done.append)
    pipeline.no_more_expected(last_stored)
    clock.advance(0)
    while analyzer.held or committer.held or clock.getDelayedCalls():
        if analyzer.held and (not committer.held or rng.random() < 0.5):
            analyzer.end(rng)
        elif committer.held:
            committer.end(rng)
        clock.advance(1)

    unfinished = [mid for mid, s in sent.items() if not s.done]
    if not stopped:
        assert unfinished == [] and pipeline.backlog == 0, (seed, unfinished)
        assert pipeline.in_progress == 0
    # Each patient's results went to be committed in the order its reports took their
    # places: the stored backlog first (read at start), then as submitted.
    order = [*places, *live]
    for mrn in MRNS:
        mine = [mid for mid in recorded if mrn in sent[mid].patients]
        expected = [mid for mid in order if mrn in sent[mid].patients and mid in mine]
        assert mine == expected, (seed, mrn, mine, expected)


@pytest.mark.parametrize("seed", range(60))
def test_every_report_finishes_and_each_patients_in_order(seed):
    _run(seed, stop=False)


@pytest.mark.parametrize("seed", range(60, 80))
def test_a_stop_at_any_point_leaves_the_order_of_what_finished(seed):
    _run(seed, stop=True)
