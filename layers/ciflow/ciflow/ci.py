"""The Cloud Infinite port: submit and query `/jobs` through cos-python-sdk-v5.

The SDK's response parser is only ever given CI's own responses; callback bodies, which anyone can
send, are parsed by `callbacks` with defusedxml instead.
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable, Optional

from .clientcache import ClientCache
from .errors import PermanentError, RetryableError
from .settings import Credentials, current_credentials, get_settings

_clients = ClientCache()

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
    quiet_sdk_loggers()
    # No SDK-level retries: a blindly retried POST /jobs can create a duplicate job. CiJobs retries
    # itself, with jittered backoff, and looks for an accepted job before submitting again.
    return CosS3Client(CosConfig(**kwargs), retry=0)


def quiet_sdk_loggers() -> None:
    """cos-python-sdk-v5 logs request bodies at INFO, and a POST /jobs body holds the callback URL with
    its token. SCF runtimes may set the root logger to INFO, so the SDK's own loggers stay at WARNING."""
    import logging

    for name in ("qcloud_cos", "qcloud_cos.cos_client", "qcloud_cos.cos_auth", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)


def ci_client(creds: Optional[Credentials] = None) -> Any:
    """The cached SDK client for the current credentials."""
    creds = creds or current_credentials()
    s = get_settings()
    return _clients.get((creds, s.region, s.ci_endpoint), lambda: _build_client(creds))


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


def backoff(attempt: int, base: float = 0.2, cap: float = 5.0) -> float:
    """Full-jitter exponential backoff (seconds) for attempt 1, 2, ..."""
    return random.uniform(0, min(cap, base * (2 ** attempt)))


class CiJobs:
    """Submit and look up CI jobs. `client` can be injected; `attempts` bounds in-invocation retries."""

    def __init__(self, client: Any = None, attempts: int = 3, sleep: Callable[[float], None] = time.sleep):
        self._client = client
        self.attempts = attempts
        self.sleep = sleep

    @property
    def client(self) -> Any:
        return self._client if self._client is not None else ci_client()

    def _retrying(self, what: str, call: Callable[[], Any]) -> Any:
        for attempt in range(1, self.attempts + 1):
            try:
                return call()
            except Exception as exc:
                err = _classify(exc, what)
                if isinstance(err, PermanentError) or attempt == self.attempts:
                    raise err from exc
                self.sleep(backoff(attempt))
        raise AssertionError("unreachable")

    def create(self, bucket: str, job: dict[str, Any]) -> dict[str, Any]:
        """POST /jobs and return the job's JobsDetail, without ever creating it twice.

        After a retryable failure CI may still have accepted the job (5xx after acceptance), so
        before each new attempt the job is looked up by its input object and UserData.
        """
        user_data = str(job.get("Operation", {}).get("UserData", ""))
        for attempt in range(1, self.attempts + 1):
            try:
                resp = self.client.ci_create_media_jobs(Bucket=bucket, Jobs=job, Lst={},
                                                        ContentType="application/xml")
            except Exception as exc:
                err = _classify(exc, "POST /jobs")
                if isinstance(err, PermanentError):
                    raise err from exc
                self.sleep(backoff(attempt))
                found = self.find(bucket, job["Tag"], job["Input"]["Object"], user_data) if user_data else None
                if found is not None:
                    return found
                if attempt == self.attempts:
                    raise err from exc
                continue
            details = as_list(resp.get("JobsDetail"))
            if details and details[0].get("JobId"):
                return details[0]
        raise RetryableError("POST /jobs: no JobId in CI's answers")

    def get(self, bucket: str, job_id: str) -> Optional[dict[str, Any]]:
        """GET /jobs/<id>; None when CI does not know the job in this bucket."""
        try:
            resp = self._retrying(f"GET /jobs/{job_id}",
                                  lambda: self.client.ci_get_media_jobs(Bucket=bucket, JobIDs=job_id))
        except PermanentError as err:
            if err.code in ("ResourceNotFound", "InvalidArgument", "404"):
                return None
            raise
        for detail in as_list(resp.get("JobsDetail")):
            if isinstance(detail, dict) and detail.get("JobId") == job_id:
                return detail
        return None

    def get_many(self, bucket: str, job_ids: list[str], batch: int = 10) -> dict[str, dict[str, Any]]:
        """Several jobs in few queries (GET /jobs/<id>,<id>,…); jobs CI does not know are absent."""
        out: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(job_ids))
        for i in range(0, len(unique), batch):
            chunk = ",".join(unique[i:i + batch])
            try:
                resp = self._retrying(f"GET /jobs/{chunk}",
                                      lambda c=chunk: self.client.ci_get_media_jobs(Bucket=bucket, JobIDs=c))
            except PermanentError as err:
                if err.code in ("ResourceNotFound", "InvalidArgument", "404"):
                    continue
                raise
            for detail in as_list(resp.get("JobsDetail")):
                if isinstance(detail, dict) and detail.get("JobId") in unique:
                    out[str(detail["JobId"])] = detail
        return out

    def find(self, bucket: str, tag: str, key: str, user_data: str) -> Optional[dict[str, Any]]:
        """The newest job for `key` whose UserData is `user_data` (GET /jobs?inputObject=…), if any."""
        params = {"tag": tag, "inputObject": key, "states": "All", "size": "100", "orderByTime": "Desc",
                  "nextToken": ""}

        def call() -> Any:
            # The SDK's ci_list_media_jobs has no inputObject parameter; its request primitive does.
            from qcloud_cos.cos_auth import CosS3Auth
            from qcloud_cos.cos_comm import format_dict, format_values, xml_to_dict

            client = self.client
            conf = client._conf
            p = format_values(dict(params))
            url = conf.uri(bucket=bucket, path="/jobs", endpoint=conf._endpoint_ci)
            rt = client.send_request(method="GET", url=url, bucket=bucket, auth=CosS3Auth(conf, "/jobs", params=p),
                                     params=p, headers={}, ci_request=True)
            data = xml_to_dict(rt.content)
            format_dict(data, ["JobsDetail"])
            return data

        resp = self._retrying(f"GET /jobs?inputObject={key}", call)
        for detail in as_list(resp.get("JobsDetail")):
            op = detail.get("Operation") if isinstance(detail, dict) else None
            if isinstance(op, dict) and op.get("UserData") == user_data:
                return detail
        return None
