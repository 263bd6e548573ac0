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
    if len(live) <= 1 or _pool_for_caller() is None:
        for i, c in live:
            results[i] = _outcome(c)
        return results
    # The caller's thread takes the first call itself: one fewer hand-off per batch.
    later = [(i, started(c)) for i, c in live[1:]]
    i0, c0 = live[0]
    results[i0] = _outcome(c0)
    for i, handle in later:
        results[i] = handle.outcome()
    return results


class Started:
    """A call sent off to the pool (`started`), whose outcome the caller collects when it needs it."""

    def __init__(self, future: Any = None, done: Any = None):
        self._future = future
        self._done = done

    def outcome(self) -> Any:
        """The call's result, or `Failed(error)`; waits for the call to finish (the first time it is asked)."""
        if self._future is not None:
            future, self._future = self._future, None
            self._done = _outcome(future.result)
        return self._done


def started(call: Callable[[], Any]) -> Started:
    """Send `call` off now and go on: for a request whose answer is needed later than the next one's (a
    write that only a later check depends on). Where `settled` would run its calls in the calling thread
    (three batches deep), `call` runs there at once."""
    pool = _pool_for_caller()
    if pool is None:
        return Started(done=_outcome(call))
    keys = logger.thread_safe_get_current_keys()

    def run() -> Any:
        logger.thread_safe_clear_keys()
        if keys:
            logger.thread_safe_append_keys(**keys)
        return call()

    return Started(pool.submit(run))


def _pool_for_caller() -> Optional[ThreadPoolExecutor]:
    """The pool a call sent from this thread goes to. A batch inside a batch (sent from an outer pool thread)
    goes to the inner pool: waiting on its own pool could deadlock it once every worker waits. A third level
    has none (None): it runs in the calling thread."""
    thread = threading.current_thread().name
    if thread.startswith(INNER_THREAD_PREFIX):
        return None
    return _inner_executor() if thread.startswith(THREAD_PREFIX) else _executor()


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - handed back to the caller
        return Failed(exc)
