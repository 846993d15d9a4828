"""The stop signals' handler (gateway.stop_signals), driven as the signal module calls it."""

from __future__ import annotations

import signal

from gateway.stop_signals import StopSignals


def _delivered() -> tuple[StopSignals, list[tuple[str, int]]]:
    signals = StopSignals()
    calls: list[tuple[str, int]] = []
    signals.deliver_to(lambda signum: calls.append(("stop", signum)),
                       lambda signum: calls.append(("force", signum)))
    return signals, calls


def test_the_first_signal_stops_the_next_forces_and_later_ones_do_nothing() -> None:
    signals, calls = _delivered()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signals.handler(signum)
    assert calls == [("stop", signal.SIGTERM), ("force", signal.SIGINT)]


def test_a_signal_during_a_stop_of_the_process_s_own_forces_it() -> None:
    # The reactor stopped without a signal (a listener that failed): the first SIGTERM
    # during the wait for stragglers only asked the stopped reactor to stop and was lost;
    # the operator had to send a second.
    signals, calls = _delivered()
    signals.stop_under_way()
    signals.handler(signal.SIGTERM)
    assert calls == [("force", signal.SIGTERM)]


def test_a_stop_under_way_after_a_signal_changes_nothing() -> None:
    signals, calls = _delivered()
    signals.handler(signal.SIGINT)
    signals.stop_under_way()
    signals.handler(signal.SIGTERM)
    assert calls == [("stop", signal.SIGINT), ("force", signal.SIGTERM)]


def test_signals_before_delivery_are_delivered_then() -> None:
    signals = StopSignals()
    signals.handler(signal.SIGTERM)
    signals.handler(signal.SIGINT)
    calls: list[tuple[str, int]] = []
    signals.deliver_to(lambda signum: calls.append(("stop", signum)),
                       lambda signum: calls.append(("force", signum)))
    assert calls == [("stop", signal.SIGTERM), ("force", signal.SIGINT)]
