"""Structured JSON logs (powertools Logger) with SCF correlation keys.

SCF's context is an object or a dict depending on the runtime (undocumented), so both are read.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "ciflow"))

CONTEXT_FIELDS = ("request_id", "function_name", "function_version", "namespace")


def context_value(context: Any, name: str) -> Any:
    if context is None:
        return None
    if isinstance(context, dict):
        return context.get(name)
    return getattr(context, name, None)


def bind(**fields: Any) -> None:
    """Add correlation keys to every following log line of this invocation.

    Thread-local, so concurrent invocations in one process (the local runner) never mix keys.
    """
    logger.thread_safe_append_keys(**fields)


def bind_invocation(context: Any, function: str) -> dict[str, Any]:
    """Reset per-invocation keys and add the SCF request id and function name."""
    logger.thread_safe_clear_keys()
    fields = {"function": function}
    for name in CONTEXT_FIELDS:
        value = context_value(context, name)
        if value:
            fields[name] = str(value)
    bind(**fields)
    return fields
