"""Build CI job requests from rules, as the `/jobs` API pages specify."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from .rules import Rule


def callback_url(base: str, token: str) -> str:
    """Append the token as the `t` query parameter, keeping any query the base URL has."""
    parts = urlsplit(base)
    query = (parts.query + "&" if parts.query else "") + urlencode({"t": token})
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))


def build_job(rule: Rule, key: str, user_data: str, callback: str, callback_format: str) -> dict[str, Any]:
    """The `<Request>` body for one object and rule (as a dict for the SDK's XML writer)."""
    operation: dict[str, Any] = {"UserData": user_data, "JobLevel": str(rule.job_level)}
    if rule.job == "ImageInspect" and rule.auto_process:
        operation["ImageInspect"] = {"AutoProcess": "true", "ProcessType": rule.auto_process}
    job: dict[str, Any] = {"Tag": rule.job, "Input": {"Object": key}, "Operation": operation}
    if callback:
        job["CallBack"] = callback
        job["CallBackFormat"] = rule.callback_format or callback_format
        job["CallBackType"] = "Url"
    else:
        job["CallBack"] = "no"
    return job
