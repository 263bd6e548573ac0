"""The Cloud Infinite port: submit and query `/jobs` through cos-python-sdk-v5.

The SDK's response parser is only ever given CI's own responses; callback bodies, which anyone can
send, are parsed by `callbacks` with defusedxml instead.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

from .errors import PermanentError, RetryableError
from .settings import Credentials, current_credentials, get_settings

_lock = threading.Lock()
_clients: dict[tuple[Any, ...], Any] = {}

RETRYABLE_CI_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "RequestLimitExceeded", "Throttling"}


def _build_client(creds: Credentials) -> Any:
    from qcloud_cos import CosConfig, CosS3Client

    s = get_settings()
    ep = s.ci_endpoint
    kwargs: dict[str, Any] = {
        "Region": s.region, "SecretId": creds.secret_id, "SecretKey": creds.secret_key,
        "Token": creds.token, "Scheme": ep.scheme, "Timeout": s.http_timeout,
    }
    if ep.domain:
        kwargs["EndpointCi"] = ep.domain
    if ep.ip:
        kwargs["IP"] = ep.ip
        kwargs["Port"] = ep.port
    # One SDK retry at most: a retried POST /jobs can create a duplicate job (handled by the caller).
    return CosS3Client(CosConfig(**kwargs), retry=1)


def ci_client(creds: Optional[Credentials] = None) -> Any:
    """The cached SDK client for the current credentials."""
    creds = creds or current_credentials()
    s = get_settings()
    cache_key = (creds, s.region, s.ci_endpoint)
    client = _clients.get(cache_key)
    if client is None:
        with _lock:
            client = _clients.get(cache_key)
            if client is None:
                client = _build_client(creds)
                _clients.clear()
                _clients[cache_key] = client
    return client


def _classify(exc: Exception, what: str) -> Exception:
    from qcloud_cos.cos_exception import CosClientError, CosServiceError

    if isinstance(exc, CosServiceError):
        status = int(exc.get_status_code() or 0)
        code = str(exc.get_error_code() or "")
        if status >= 500 or status == 429 or code in RETRYABLE_CI_CODES:
            return RetryableError(f"{what}: {code or status}")
        return PermanentError(code or str(status), f"{what}: {exc.get_error_msg()}")
    if isinstance(exc, CosClientError):
        return RetryableError(f"{what}: {exc}")
    return RetryableError(f"{what}: {type(exc).__name__}: {exc}")


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class CiJobs:
    """Submit and look up CI jobs. `client` can be injected."""

    def __init__(self, client: Any = None):
        self._client = client

    @property
    def client(self) -> Any:
        return self._client if self._client is not None else ci_client()

    def create(self, bucket: str, job: dict[str, Any]) -> dict[str, Any]:
        """POST /jobs; returns the created job's JobsDetail."""
        try:
            resp = self.client.ci_create_media_jobs(Bucket=bucket, Jobs=job, Lst={}, ContentType="application/xml")
        except Exception as exc:
            raise _classify(exc, "POST /jobs") from exc
        details = as_list(resp.get("JobsDetail"))
        if not details or not details[0].get("JobId"):
            raise RetryableError("POST /jobs: response has no JobId")
        return details[0]

    def get(self, bucket: str, job_id: str) -> Optional[dict[str, Any]]:
        """GET /jobs/<id>; None when CI does not know the job in this bucket."""
        try:
            resp = self.client.ci_get_media_jobs(Bucket=bucket, JobIDs=job_id)
        except Exception as exc:
            err = _classify(exc, f"GET /jobs/{job_id}")
            if isinstance(err, PermanentError) and err.code in ("ResourceNotFound", "InvalidArgument", "404"):
                return None
            raise err from exc
        for detail in as_list(resp.get("JobsDetail")):
            if isinstance(detail, dict) and detail.get("JobId") == job_id:
                return detail
        return None
