"""The error hierarchy. Handlers map these to retries (raise) or recorded outcomes (return)."""

from __future__ import annotations


class CiflowError(Exception):
    """Base class for every error ciflow raises on purpose."""


class ConfigError(CiflowError):
    """Settings or rules are invalid. Raised at cold start; fix the deployment, retrying will not help."""


class RetryableError(CiflowError):
    """A transient failure (network, 5xx, throttling). Raised so that SCF retries the invocation."""


class PermanentError(CiflowError):
    """A failure that a retry cannot fix (unsupported type, too large, access denied, object gone).

    Recorded as a status and logged; the invocation returns normally so SCF does not retry it.
    """

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class BadEventError(CiflowError):
    """An incoming event or record is malformed. Logged and dropped, never retried."""


class RequestRejected(CiflowError):
    """An HTTP request to the callback endpoint is refused with `status` and a short reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason
