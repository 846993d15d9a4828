"""AnalysisPool with a fake engine, in processes and in threads."""

from __future__ import annotations

import queue
import time

import pytest

from gateway.analysis import AnalysisPool, AnalysisTimedOut, PoolClosed, WorkerDied
from gateway.inputs import TextMetadata, text_request
from ri_engine.errors import AnalysisFailure, RequestError

from gateway_fake_engine import FakeEngine


class ThreadHopReactor:
    """Collects callFromThread calls; the test runs them on its own thread."""

    def __init__(self):
        self.calls = queue.Queue()

    def callFromThread(self, fn, *args):  # noqa: N802 - Twisted's name
        self.calls.put((fn, args))

    def run_one(self):
        fn, args = self.calls.get(timeout=120)
        fn(*args)


def outcome(reactor, d):
    reactor.run_one()
    results = []
    d.addBoth(results.append)
    return results[0]


@pytest.fixture(params=["process", "thread"])
def pool(request):
    reactor = ThreadHopReactor()
    p = AnalysisPool(2, reactor=reactor, engine_factory=FakeEngine, executor=request.param)
    p.test_reactor = reactor
    yield p
    p.close()


def test_results_errors_and_model_version(pool):
    reactor = pool.test_reactor
    started = pool.start()
    assert outcome(reactor, started) == "fake-1"
    assert pool.ready
    result = outcome(reactor, pool.analyze(text_request("Large pneumothorax.", TextMetadata())))
    assert [i.kind for i in result.patient_results[0].inferences] == ["criticalResult"]
    refused = outcome(reactor, pool.analyze(text_request("REFUSE", TextMetadata())))
    assert refused.check(RequestError) and refused.value.code == "BadRequest"
    crashed = outcome(reactor, pool.analyze(text_request("CRASH", TextMetadata())))
    assert crashed.check(AnalysisFailure)
    assert crashed.value.message == "engine failed: ZeroDivisionError"
    assert pool.pending == 0


def test_process_pool_runs_outside_this_process():
    import os

    reactor = ThreadHopReactor()
    pool = AnalysisPool(1, reactor=reactor, engine_factory=FakeEngine, executor="process")
    try:
        result = outcome(reactor, pool.analyze(text_request("normal", TextMetadata())))
        assert result.model_version != f"fake-1/{os.getpid()}"
    finally:
        pool.close()


def test_closed_pool_fails_cleanly():
    pool = AnalysisPool(1, reactor=ThreadHopReactor(), engine_factory=FakeEngine, executor="thread")
    pool.close()
    results = []
    pool.analyze(text_request("x", TextMetadata())).addErrback(results.append)
    assert results[0].check(AnalysisFailure)


def test_mapping_in_a_worker_keeps_the_hl7_error(pool):
    from mappings.errors import ContentError, UnsupportedMessage

    from gateway_samples import oru

    reactor = pool.test_reactor
    reports = outcome(reactor, pool.map_message(oru("W1").decode()))
    assert [(r.obr_index, r.accession, r.analyse) for r in reports] == [(1, "ACC3003", True)]
    no_obr = "\r".join(s for s in oru("W2").decode().split("\r") if not s.startswith(("OBR", "OBX")))
    failed = outcome(reactor, pool.map_message(no_obr))
    assert failed.check(ContentError)
    assert (failed.value.err_code, failed.value.location) == ("100", "OBR")
    adt = outcome(reactor, pool.map_message(oru("W3", msh9="ADT^A01").decode()))
    assert adt.check(UnsupportedMessage) and adt.value.err_code == "200"


def test_map_and_analyze_in_one_worker_call(pool):
    from gateway.analysis import Analysis, ReportInfo
    from mappings.errors import ContentError

    from gateway_samples import oru

    reactor = pool.test_reactor
    text = oru("M1", report="Large pneumothorax.").decode()
    (compact,) = outcome(reactor, pool.map_and_analyze(text, with_result=False))
    assert compact[0] == ReportInfo(1, "ACC3003", "F", True, None, "CT")
    assert isinstance(compact[1], Analysis) and compact[1].result is None
    assert [kind for kind, _ in compact[1].inferences] == ["criticalResult"]
    ((report, analysis),) = outcome(reactor, pool.map_and_analyze(text, with_result=True))
    assert (report.obr_index, report.document_text) == (1, "FINDINGS:\nLarge pneumothorax.")
    assert analysis.result.patient_results[0].inferences[0].kind == "criticalResult"
    ((_, refused),) = outcome(reactor, pool.map_and_analyze(oru("M2", report="REFUSE").decode()))
    assert isinstance(refused, RequestError) and refused.code == "BadRequest"
    no_obr = "\r".join(s for s in text.split("\r") if not s.startswith(("OBR", "OBX")))
    failed = outcome(reactor, pool.map_and_analyze(no_obr))
    assert failed.check(ContentError) and failed.value.location == "OBR"


@pytest.mark.parametrize("priority", ["idle", "low", "normal"])
def test_worker_processes_run_at_the_chosen_priority(priority):
    import os

    if priority == "idle" and not hasattr(os, "SCHED_IDLE"):
        pytest.skip("no SCHED_IDLE on this platform")
    reactor = ThreadHopReactor()
    pool = AnalysisPool(1, reactor=reactor, engine_factory=FakeEngine, executor="process",
                        priority=priority)
    try:
        policy = outcome(reactor, pool._submit(os.sched_getscheduler, 0))
        niceness = outcome(reactor, pool._submit(os.nice, 0))
    finally:
        pool.close()
    base = os.nice(0)
    assert (policy, niceness) == {
        "idle": (os.SCHED_IDLE, base),
        "low": (os.SCHED_OTHER, min(19, base + 10)),
        "normal": (os.SCHED_OTHER, base)}[priority]


def test_a_mapping_bug_is_a_mapping_failure(pool):
    from gateway.analysis import MappingFailure

    from gateway_samples import oru

    reactor = pool.test_reactor
    # A mapping configuration that is not one makes map_oru itself fail (a bug's stand-in).
    failed = outcome(reactor, pool.map_and_analyze(oru("B1").decode(), "not a configuration"))
    assert failed.check(MappingFailure)
    assert failed.value.message == "mapping failed: AttributeError"


# --- workers that die or hang -----------------------------------------------------------


class ClockedHopReactor(ThreadHopReactor):
    """ThreadHopReactor with a manual clock for the pool's timeouts."""

    def __init__(self):
        super().__init__()
        from twisted.internet.task import Clock

        self.clock = Clock()
        self.callLater = self.clock.callLater  # noqa: N815 - Twisted's name


def settle(reactor, d):
    """Run the pool's hops back to the reactor until ``d`` has fired (calls from work
    given up earlier may come first); its result or Failure."""
    results = []
    d.addBoth(results.append)
    while not results:
        reactor.run_one()
    return results[0]


def _pid(result) -> int:
    return int(result.model_version.rsplit("/", 1)[1])


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):  # reaped between the open and the read
        return True


def test_a_worker_that_dies_is_replaced_and_the_pool_goes_on():
    reactor = ClockedHopReactor()
    restarts = []
    pool = AnalysisPool(1, reactor=reactor, engine_factory=FakeEngine, executor="process",
                        on_restart=restarts.append)
    try:
        first = settle(reactor, pool.analyze(text_request("Pneumothorax.", TextMetadata())))
        died = settle(reactor, pool.analyze(text_request("DIE", TextMetadata())))
        assert died.check(WorkerDied) and isinstance(died.value, AnalysisFailure)
        assert restarts == ["worker_died"] and pool.restarts == 1
        # Before, every later analysis failed on the broken pool until a restart.
        for _ in range(2):
            after = settle(reactor, pool.analyze(text_request("Pneumothorax.", TextMetadata())))
            assert [i.kind for i in after.patient_results[0].inferences] == ["criticalResult"]
            assert _pid(after) != _pid(first)
        assert restarts == ["worker_died"] and pool.pending == 0
    finally:
        pool.close()


def test_an_analysis_that_hangs_times_out_and_its_worker_is_killed():
    reactor = ClockedHopReactor()
    restarts = []
    pool = AnalysisPool(1, reactor=reactor, engine_factory=FakeEngine, executor="process",
                        timeout=30, on_restart=restarts.append)
    try:
        warm = settle(reactor, pool.analyze(text_request("Pneumothorax.", TextMetadata())))
        hung = pool.analyze(text_request("HANG", TextMetadata()))
        reactor.clock.advance(29)
        assert not hung.called
        reactor.clock.advance(1)
        failure = settle(reactor, hung)
        assert failure.check(AnalysisTimedOut) and "30 s" in failure.value.message
        assert restarts == ["timeout"]
        deadline = time.monotonic() + 60
        while not _gone(_pid(warm)):  # killed, not left sleeping for an hour
            assert time.monotonic() < deadline, "the hung worker was not killed"
            time.sleep(0.05)
        after = settle(reactor, pool.analyze(text_request("Pneumothorax.", TextMetadata())))
        assert [i.kind for i in after.patient_results[0].inferences] == ["criticalResult"]
        assert pool.pending == 0
    finally:
        pool.close()


def test_a_thread_analysis_that_times_out_is_given_up_and_its_late_result_dropped():
    # The analyses that followed used to wait behind the thread given up (one thread): a
    # report that never returns held every later one until it too timed out.
    reactor = ClockedHopReactor()
    pool = AnalysisPool(1, reactor=reactor, engine_factory=FakeEngine, executor="thread",
                        timeout=0.5)
    try:
        slow = pool.analyze(text_request("SLOW pneumothorax", TextMetadata()))  # 3 s
        reactor.clock.advance(0.5)
        assert slow.called
        assert settle(reactor, slow).check(AnalysisTimedOut)
        began = time.monotonic()
        ok = settle(reactor, pool.analyze(text_request("Pneumothorax.", TextMetadata())))
        assert time.monotonic() - began < 2, "waited for the thread that timed out"
        assert ok.patient_results[0].inferences
        reactor.run_one()  # the thread's late result: dropped, nothing fires twice
        assert pool.pending == 0 and pool.restarts == 1
    finally:
        pool.close()


class ThreadNoting(FakeEngine):
    """Notes (weakly) each thread it analyses on."""

    threads: list = []

    def analyze(self, data):
        import threading
        import weakref

        ThreadNoting.threads.append(weakref.ref(threading.current_thread()))
        return super().analyze(data)


def _join(threads, timeout):
    """Join each of ``threads`` (in a function: no name in the test's frame keeps one)."""
    for thread in threads:
        thread.join(timeout)


def test_threads_given_up_are_not_kept_by_the_pool_once_they_end():
    # The pool kept every analysis thread it ever started (for the wait at the stop): each
    # thread pool replaced after a timeout added its threads for good.
    import gc

    reactor = ClockedHopReactor()
    ThreadNoting.threads.clear()
    pool = AnalysisPool(1, reactor=reactor, engine_factory=ThreadNoting, executor="thread",
                        timeout=0.5)
    try:
        for _ in range(3):
            slow = pool.analyze(text_request("SLOW pneumothorax", TextMetadata()))  # 3 s
            reactor.clock.advance(0.5)
            assert settle(reactor, slow).check(AnalysisTimedOut)
        assert pool.restarts == 3 and len(pool.analysis_threads()) == 3  # given up, running on
        given_up = ThreadNoting.threads[:3]
        assert len({ref() for ref in given_up}) == 3
        _join(pool.analysis_threads(), 10)
        assert pool.analysis_threads() == []  # they return, and their thread pools end them
        for _ in range(3):
            reactor.run_one()  # their late results, dropped
        ok = settle(reactor, pool.analyze(text_request("Pneumothorax.", TextMetadata())))
        assert ok.patient_results[0].inferences
        gc.collect()
        assert all(ref() is None for ref in given_up), "ended threads still held"
        assert ThreadNoting.threads[3]() is not None and len(pool.analysis_threads()) == 1
    finally:
        pool.close()


def test_warming_up_is_not_timed():
    reactor = ClockedHopReactor()
    pool = AnalysisPool(1, reactor=reactor, engine_factory=FakeEngine, executor="process",
                        timeout=0.001)
    try:
        started = pool.start()
        reactor.clock.advance(10)
        assert settle(reactor, started) == "fake-1"
    finally:
        pool.close()


def test_the_analyses_waiting_behind_one_that_hangs_are_tried_again_not_timed_out():
    # One submitted with the hung one times out on the same reactor turn: it was recorded
    # timed out though it never ran.  Those still queued in the pool when its workers were
    # killed (more than the workers and their call queue hold) were cancelled: an
    # AnalysisFailure, never tried again.  Both are victims of the kill: WorkerDied.
    reactor = ClockedHopReactor()
    pool = AnalysisPool(1, reactor=reactor, engine_factory=FakeEngine, executor="process",
                        timeout=30)
    try:
        settle(reactor, pool.analyze(text_request("warm", TextMetadata())))
        hung = pool.analyze(text_request("HANG", TextMetadata()))
        waiting = [pool.analyze(text_request("Pneumothorax.", TextMetadata()))]
        reactor.clock.advance(10)
        waiting += [pool.analyze(text_request(f"Pneumothorax {n}.", TextMetadata()))
                    for n in range(5)]
        reactor.clock.advance(20)
        assert settle(reactor, hung).check(AnalysisTimedOut)
        # The one handed over with it is a victim of the kill; those held in the pool
        # (beyond two per worker) go to the new workers.
        assert settle(reactor, waiting[0]).type is WorkerDied
        assert all(settle(reactor, d).patient_results[0].inferences for d in waiting[1:])
        assert pool.pending == 0 and pool.restarts == 1
        after = settle(reactor, pool.analyze(text_request("Pneumothorax.", TextMetadata())))
        assert after.patient_results[0].inferences
    finally:
        pool.close()


def test_an_engine_that_cannot_be_built_fails_each_analysis_without_breaking_the_pool():
    # The worker exited in its initializer: the pool broke, was replaced at every analysis,
    # and each failed as WorkerDied, so the pipeline blamed every report for killing its
    # worker (recorded failed, stage worker, after two more pools each).
    from gateway_fake_engine import UnbuildableEngine

    reactor = ClockedHopReactor()
    restarts = []
    pool = AnalysisPool(1, reactor=reactor, engine_factory=UnbuildableEngine,
                        executor="process", on_restart=restarts.append)
    try:
        started = settle(reactor, pool.start())
        assert started.check(AnalysisFailure) and not pool.ready
        for _ in range(2):
            failed = settle(reactor, pool.analyze(text_request("Pneumothorax.", TextMetadata())))
            assert failed.type is AnalysisFailure and "RuntimeError" in failed.value.message
        assert restarts == [] and pool.pending == 0
    finally:
        pool.close()


def test_the_death_of_a_worker_started_beside_a_long_analysis_is_noticed_at_once(tmp_path):
    # The pool's second worker is started by the submission that needs it, and the pool's
    # management thread, woken by that submission first, often went back to watching the
    # first worker only: the new one's death went unnoticed until the long analysis beside
    # it finished (with nothing beside it, until the timeout).  Several rounds, as the
    # thread does not always lose that race.
    reactor = ThreadHopReactor()
    pool = AnalysisPool(2, reactor=reactor, engine_factory=FakeEngine, executor="process")
    releases = [tmp_path / f"release{n}" for n in range(8)]
    try:
        for release in releases:
            held = pool.analyze(text_request(f"WAITFOR:{release};", TextMetadata()))
            died = pool.analyze(text_request("DIE", TextMetadata()))
            fn, args = reactor.calls.get(timeout=30)  # the death, while the other is held
            fn(*args)
            assert settle(reactor, died).check(WorkerDied)
            assert settle(reactor, held).check(WorkerDied)  # a victim, as the pipeline expects
    finally:
        for release in releases:
            release.touch()
        pool.close()


@pytest.mark.parametrize("executor", ["process", "thread"])
def test_an_analysis_run_alone_holds_every_other_until_it_is_over(tmp_path, executor):
    # Alone: nothing of another key shares the pool with it, so a death while it runs is its
    # own; what comes meanwhile (a REST job, another report) waits, in the order it came.
    first, alone_release = tmp_path / "first", tmp_path / "alone"
    reactor = ThreadHopReactor()
    pool = AnalysisPool(2, reactor=reactor, engine_factory=FakeEngine, executor=executor)
    try:
        shared = pool.analyze(text_request(f"WAITFOR:{first}; one", TextMetadata()))
        alone = pool.analyze(text_request(f"WAITFOR:{alone_release}; two", TextMetadata()),
                             alone=("message", 1))
        same_key = pool.analyze(text_request("three", TextMetadata()), alone=("message", 1))
        later = pool.analyze(text_request("four", TextMetadata()))
        other_key = pool.analyze(text_request("five", TextMetadata()), alone=("job", "j"))
        assert pool.pending == 1  # the alone one waits for the shared one to end
        first.touch()
        settle(reactor, shared)
        assert pool.pending == 2  # it runs, with the other of its key; the rest wait
        assert not later.called and not other_key.called
        settle(reactor, same_key)
        assert pool.pending == 1 and not later.called
        alone_release.touch()
        settle(reactor, alone)
        assert not settle(reactor, later).patient_results[0].inferences
        settle(reactor, other_key)
        assert pool.pending == 0
    finally:
        first.touch()
        alone_release.touch()
        pool.close()


def test_analyses_beyond_two_per_worker_wait_and_are_timed_from_their_hand_over(tmp_path):
    # All were handed to the executor at once (a burst of REST jobs): the timeout of one at
    # the back of its queue ran while it waited, and it was recorded as a hang (its workers
    # killed) without ever having run that long.
    files = [tmp_path / name for name in ("a", "b", "c")]
    reactor = ClockedHopReactor()
    pool = AnalysisPool(1, reactor=reactor, engine_factory=FakeEngine, executor="thread",
                        timeout=30)
    try:
        first, second, third = (pool.analyze(text_request(f"WAITFOR:{f};", TextMetadata()))
                                for f in files)
        assert pool.pending == 2
        reactor.clock.advance(20)
        files[0].touch()
        files[1].touch()
        settle(reactor, first)
        settle(reactor, second)
        reactor.clock.advance(15)  # 35 s after it was submitted, 15 s after its hand-over
        assert not third.called
        files[2].touch()
        assert settle(reactor, third).patient_results[0].inferences == []
        assert pool.restarts == 0 and pool.pending == 0
    finally:
        for f in files:
            f.touch()
        pool.close()


def test_a_place_freed_beside_a_long_analysis_goes_to_the_next_held_one(tmp_path):
    # Held analyses were only handed over once every shared analysis in the pool was over:
    # one long (or hung) analysis held all of them, a worker idle, until it ended or timed
    # out.
    release = tmp_path / "release"
    reactor = ThreadHopReactor()
    pool = AnalysisPool(2, reactor=reactor, engine_factory=FakeEngine, executor="thread")
    try:
        long = pool.analyze(text_request(f"WAITFOR:{release};", TextMetadata()))
        quick = [pool.analyze(text_request(f"quick {n}", TextMetadata())) for n in range(3)]
        held = pool.analyze(text_request("held", TextMetadata()))
        assert pool.pending == pool.capacity == 4 and not held.called
        for d in quick:
            settle(reactor, d)
        assert pool.pending == 2  # the long one and the held one, handed over at once
        assert settle(reactor, held).patient_results[0].inferences == []
        assert not long.called
    finally:
        release.touch()
        pool.close()


def test_analyses_held_in_a_pool_that_closes_fail_with_pool_closed(tmp_path):
    # close() dropped the held analyses without a word: their Deferreds never fired, so the
    # report or REST job waiting on one never learnt that it was left for the next start.
    files = [tmp_path / name for name in ("a", "b")]
    reactor = ThreadHopReactor()
    pool = AnalysisPool(1, reactor=reactor, engine_factory=FakeEngine, executor="thread")
    try:
        for f in files:
            pool.analyze(text_request(f"WAITFOR:{f};", TextMetadata()))
        held = [pool.analyze(text_request("held", TextMetadata())),
                pool.analyze(text_request("alone", TextMetadata()), alone=("message", 1))]
        assert pool.pending == 2 and not any(d.called for d in held)
        pool.close()
        assert all(d.called for d in held)
        assert all(settle(reactor, d).check(PoolClosed) for d in held)
    finally:
        for f in files:
            f.touch()
        pool.close()
