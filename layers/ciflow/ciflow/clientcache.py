"""One cached SDK client per credential set: warm containers reuse connections, rotated keys get a
fresh client, and clients built for old keys are dropped."""

from __future__ import annotations

import threading
from typing import Any, Callable, Hashable


class ClientCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[Hashable, Any] = {}

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        client = self._clients.get(key)
        if client is None:
            with self._lock:
                client = self._clients.get(key)
                if client is None:
                    client = build()
                    self._clients.clear()
                    self._clients[key] = client
        return client
