"""AnalysisPool with a fake engine, in processes and in threads."""

from __future__ import annotations

import queue

import pytest

from gateway.analysis import AnalysisPool
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
