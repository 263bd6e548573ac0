"""Send independent requests together: one small thread pool per container.

Each COS or CI round trip costs 5–30 ms in the cloud and SCF bills wall time, so requests that do
not depend on each other's answers are issued at once. boto3 clients and the CI SDK's session are
thread-safe. Log correlation keys are thread-local, so they are carried into the workers.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

from .log import logger

_pool: Optional[ThreadPoolExecutor] = None
_inner_pool: Optional[ThreadPoolExecutor] = None
_lock = threading.Lock()
MAX_WORKERS = 8
THREAD_PREFIX = "ciflow-io"
INNER_THREAD_PREFIX = "ciflow-in"


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix=THREAD_PREFIX)
        return _pool


def _inner_executor() -> ThreadPoolExecutor:
    """The pool for a batch inside a batch (a call that itself sends requests together). Its own
    threads never wait on a pool, so the outer pool's threads can wait on it without deadlock."""
    global _inner_pool
    with _lock:
        if _inner_pool is None:
            _inner_pool = ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix=INNER_THREAD_PREFIX)
        return _inner_pool


class Timed:
    """`call`, which also keeps how long its last run took (`seconds`, by the monotonic clock): for one
    request of a batch, timed on its own."""

    def __init__(self, call: Callable[[], Any]):
        self.call = call
        self.seconds = 0.0

    def __call__(self) -> Any:
        started = time.monotonic()
        try:
            return self.call()
        finally:
            self.seconds = time.monotonic() - started


class Failed:
    """The error one call of `settled` raised, in place of its result."""

    def __init__(self, error: BaseException):
        self.error = error


def together(*calls: Optional[Callable[[], Any]]) -> list[Any]:
    """Run the calls concurrently and return their results in order (None for a None call).

    Every call runs to completion before an error is raised, so nothing is left half-issued; the
    first error in argument order is then raised.
    """
    results = settled(*calls)
    for r in results:
        if isinstance(r, Failed):
            raise r.error
    return results


def settled(*calls: Optional[Callable[[], Any]]) -> list[Any]:
    """Like `together`, but a call that raised yields `Failed(error)` instead of raising, so the
    caller can undo what the other calls did."""
    live = [(i, c) for i, c in enumerate(calls) if c is not None]
    results: list[Any] = [None] * len(calls)
    # A batch inside a batch (called from an outer pool thread) goes to the inner pool: waiting on its
    # own pool could deadlock it once every worker waits. A third level runs in the calling thread.
    thread = threading.current_thread().name
    if len(live) <= 1 or thread.startswith(INNER_THREAD_PREFIX):
        for i, c in live:
            try:
                results[i] = c()
            except Exception as exc:  # noqa: BLE001 - handed back to the caller
                results[i] = Failed(exc)
        return results
    keys = logger.thread_safe_get_current_keys()

    def run(call: Callable[[], Any]) -> Any:
        logger.thread_safe_clear_keys()
        if keys:
            logger.thread_safe_append_keys(**keys)
        return call()

    # The caller's thread takes the first call itself: one fewer hand-off per batch.
    pool = _inner_executor() if thread.startswith(THREAD_PREFIX) else _executor()
    futures = [(i, pool.submit(run, c)) for i, c in live[1:]]
    i0, c0 = live[0]
    try:
        results[i0] = c0()
    except Exception as exc:  # noqa: BLE001 - handed back to the caller
        results[i0] = Failed(exc)
    for i, fut in futures:
        try:
            results[i] = fut.result()
        except Exception as exc:  # noqa: BLE001
            results[i] = Failed(exc)
    return results
