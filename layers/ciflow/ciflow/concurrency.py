"""Send independent requests together: one small thread pool per container.

Each COS or CI round trip costs 5–30 ms in the cloud and SCF bills wall time, so requests that do
not depend on each other's answers are issued at once. boto3 clients and the CI SDK's session are
thread-safe. Log correlation keys are thread-local, so they are carried into the workers.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

from .log import logger

_pool: Optional[ThreadPoolExecutor] = None
_lock = threading.Lock()
MAX_WORKERS = 8


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="ciflow-io")
        return _pool


def together(*calls: Optional[Callable[[], Any]]) -> list[Any]:
    """Run the calls concurrently and return their results in order (None for a None call).

    Every call runs to completion before an error is raised, so nothing is left half-issued; the
    first error in argument order is then raised.
    """
    live = [(i, c) for i, c in enumerate(calls) if c is not None]
    results: list[Any] = [None] * len(calls)
    if len(live) <= 1:
        for i, c in live:
            results[i] = c()
        return results
    keys = logger.thread_safe_get_current_keys()

    def run(call: Callable[[], Any]) -> Any:
        logger.thread_safe_clear_keys()
        if keys:
            logger.thread_safe_append_keys(**keys)
        return call()

    # The caller's thread takes the first call itself: one fewer hand-off per batch.
    pool = _executor()
    futures = [(i, pool.submit(run, c)) for i, c in live[1:]]
    first_error: Optional[BaseException] = None
    i0, c0 = live[0]
    try:
        results[i0] = c0()
    except BaseException as exc:  # noqa: BLE001 - re-raised below, after the others finished
        first_error = exc
    for i, fut in futures:
        try:
            results[i] = fut.result()
        except BaseException as exc:  # noqa: BLE001
            if first_error is None:
                first_error = exc
    if first_error is not None:
        raise first_error
    return results
