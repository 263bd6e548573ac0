"""Build CI job requests from rules, as the `/jobs` API pages specify."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from .delivery import URL, Delivery
from .rules import Rule


def callback_url(base: str, token: str, rule: str = "", etag: str = "") -> str:
    """Append the token as the `t` query parameter, keeping any query the base URL has. The rule and
    ETag it was minted for go beside it (`r`, `e`): the callback can then check the token before any
    request, and read the object while CI confirms the job."""
    parts = urlsplit(base)
    params = {"t": token}
    if rule and etag:
        params.update(r=rule, e=etag)
    query = (parts.query + "&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))


def _xml_values(value: Any) -> Any:
    """Rule values → the strings CI's XML wants (`true`/`false` for booleans)."""
    if isinstance(value, dict):
        return {k: _xml_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_xml_values(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _operation(rule: Rule, bucket: str, region: str) -> dict[str, Any]:
    """The job-specific part of `Operation`, per the rule's job type."""
    p = rule.params
    op: dict[str, Any] = {}
    if rule.job == "VideoTargetRec":
        if p.get("template_id"):
            op["TemplateId"] = p["template_id"]
        else:
            targets = p.get("targets") or {}
            op["VideoTargetRec"] = {t.capitalize(): bool(targets.get(t, False)) for t in ("body", "pet", "car")}
        if p.get("snapshot_prefix"):
            op["SnapshotPrefix"] = p["snapshot_prefix"]
    if rule.job == "VideoEnhance":
        if p.get("template_id"):
            op["TemplateId"] = p["template_id"]
        else:
            op["VideoEnhance"] = p["video_enhance"]
        if p.get("watermark_template_ids"):
            op["WatermarkTemplateId"] = list(p["watermark_template_ids"])
        elif p.get("watermarks"):
            op["Watermark"] = list(p["watermarks"])
    dw = p.get("digital_watermark")
    if dw:
        op["DigitalWatermark"] = {"Type": dw["type"], "Message": dw["message"], "Version": dw["version"]}
        if rule.job == "VideoEnhance":
            op["DigitalWatermark"]["IgnoreError"] = dw["ignore_error"]
    out = p.get("output")
    if out:
        op["Output"] = {"Region": out.get("region") or region, "Bucket": out.get("bucket") or bucket,
                        "Object": out["object"]}
    return _xml_values(op)


def build_job(rule: Rule, key: str, user_data: str, callback: str, callback_format: str,
              bucket: str = "", region: str = "", delivery: Delivery = URL) -> dict[str, Any]:
    """The `<Request>` body for one object and rule (as a dict for the SDK's XML writer).
    `delivery` is the settings' choice; the rule's own wins."""
    operation: dict[str, Any] = _operation(rule, bucket, region)
    operation.update({"UserData": user_data, "JobLevel": str(rule.job_level)})
    if rule.job == "ImageInspect" and rule.auto_process:
        operation["ImageInspect"] = {"AutoProcess": "true", "ProcessType": rule.auto_process}
    job: dict[str, Any] = {"Tag": rule.job, "Input": {"Object": key}, "Operation": operation}
    delivery = rule.delivery or delivery
    if delivery.is_queue:
        job["CallBackFormat"] = rule.callback_format or callback_format
        job.update(delivery.job_fields())
    elif callback:
        job["CallBack"] = callback
        job["CallBackFormat"] = rule.callback_format or callback_format
        job.update(delivery.job_fields())
    else:
        job["CallBack"] = "no"
    return job
