"""What a stop waits for at the end of ``serve`` (gateway.process_exit)."""

from __future__ import annotations

import multiprocessing
import threading
import time

from gateway.process_exit import wait_for_exit_waits


def test_killed_workers_are_waited_for_even_without_a_stop_grace():
    # With [analysis] stop_grace = 0 every stop logged shutdown.abandoned as an ERROR: the
    # worker processes the pool had just killed were not reaped yet (one with the engine's
    # models loaded takes a moment to end), and the wait asked "are they gone?" only once.
    child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(0.3,))
    child.start()
    try:
        assert wait_for_exit_waits(0.0) == []
        assert not child.is_alive()
    finally:
        child.kill()
        child.join()


def test_an_analysis_thread_still_running_is_not_waited_for_past_the_grace():
    release = threading.Event()
    thread = threading.Thread(target=release.wait, args=(30,), name="straggler")
    thread.start()
    try:
        assert wait_for_exit_waits(0.0, [thread]) == [thread]
        assert wait_for_exit_waits(0.05, [thread]) == [thread]
    finally:
        release.set()
        thread.join()
    assert wait_for_exit_waits(0.0) == []


def test_other_threads_get_a_moment_to_end_and_analyses_only_the_grace():
    # A process pool's own thread ends once its killed workers are reaped: not an analysis.
    ending = threading.Thread(target=time.sleep, args=(0.3,), name="pool-watcher")
    release = threading.Event()
    analysis = threading.Thread(target=release.wait, args=(30,), name="analysis")
    ending.start()
    analysis.start()
    try:
        assert wait_for_exit_waits(0.0, [analysis]) == [analysis]
        assert not ending.is_alive()
    finally:
        release.set()
        analysis.join()
        ending.join()
