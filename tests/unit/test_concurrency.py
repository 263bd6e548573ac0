"""Requests sent together (ciflow.concurrency): a batch inside a batch still sends its calls at once,
and nesting never deadlocks the pool."""

from __future__ import annotations

import threading

import pytest

from ciflow.concurrency import MAX_WORKERS, Failed, settled, started, together


def meet(barrier: threading.Barrier) -> str:
    # Returns only once every party of the barrier is waiting at the same time: the calls overlap.
    barrier.wait(timeout=5)
    return threading.current_thread().name


def test_a_batch_sends_its_calls_at_once() -> None:
    b = threading.Barrier(3)
    assert len(together(lambda: meet(b), lambda: meet(b), lambda: meet(b))) == 3


def test_a_batch_inside_a_batch_sends_its_calls_at_once() -> None:
    # The second call of the outer batch runs in a pool thread; its own two calls must still overlap
    # (they used to run one after another there, each round trip adding to the critical path).
    inner = threading.Barrier(2)
    _, names = together(lambda: None, lambda: together(lambda: meet(inner), lambda: meet(inner)))
    assert len(names) == 2


def test_nesting_deeper_than_two_runs_inline_and_finishes() -> None:
    def level3() -> list[int]:
        return together(lambda: 1, lambda: 2)

    def level2() -> list[list[int]]:
        return together(level3, level3)

    assert together(level2, level2) == [[[1, 2], [1, 2]], [[1, 2], [1, 2]]]


def test_more_nested_batches_than_workers_do_not_deadlock() -> None:
    n = MAX_WORKERS * 2 + 1
    results = together(*[(lambda i=i: together(lambda: i, lambda: -i)) for i in range(n)])
    assert results == [[i, -i] for i in range(n)]


def test_every_call_runs_before_the_first_error_is_raised() -> None:
    ran: list[str] = []

    def boom() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        together(boom, lambda: ran.append("second"))
    assert ran == ["second"]
    out = settled(boom, lambda: 2)
    assert isinstance(out[0], Failed) and out[1] == 2


def test_a_started_call_runs_while_the_caller_goes_on_and_its_outcome_is_kept() -> None:
    # The started call and the caller meet at a barrier: the call runs while the caller works on.
    b = threading.Barrier(2)
    runs: list[int] = []

    def call() -> str:
        runs.append(1)
        return meet(b)

    handle = started(call)
    meet(b)
    assert handle.outcome().startswith("ciflow-io")
    assert handle.outcome() == handle.outcome() and runs == [1]   # collected once, never run again


def test_a_started_call_that_fails_hands_back_its_error() -> None:
    def boom() -> None:
        raise ValueError("no")

    out = started(boom).outcome()
    assert isinstance(out, Failed) and str(out.error) == "no"


def test_a_call_started_three_batches_deep_runs_at_once_in_the_calling_thread() -> None:
    def level3() -> tuple[str, str]:
        here = threading.current_thread().name
        return here, str(started(lambda: threading.current_thread().name).outcome())

    def level2() -> list[tuple[str, str]]:
        return together(level3, level3)

    pairs = [p for pair in together(level2, level2) for p in pair]
    deep = [(here, ran) for here, ran in pairs if here.startswith("ciflow-in")]
    assert deep and all(here == ran for here, ran in deep)
    assert all(here != ran for here, ran in pairs if not here.startswith("ciflow-in"))
