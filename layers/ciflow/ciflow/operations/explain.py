"""`explain`: what the submit function would do with an upload of a key, and what each verdict would do."""

from __future__ import annotations

import re
import time
from typing import Any, Optional

from .. import tagging, tokens
from ..actions import planned_actions, status_tags
from ..jobs import build_job, callback_url
from ..records import RecordId, Records, in_flight
from ..results import RECOGNITIONS, Label, Verdict, verdict_from_result
from ..rules import OUTCOMES, Rule
from ..submission import skip_reason
from ..userdata import UserData, normalize_etag
from .context import Context
from .walker import SKIP_NO_RULE

ETAG_PLACEHOLDER = "<etag>"
_TOKEN_RE = re.compile(r"([?&]t=)[^&#]*")


def redact_token(url: str) -> str:
    return _TOKEN_RE.sub(r"\1REDACTED", url)


def why_rule(rule: Rule, key: str, content_type: Optional[str]) -> tuple[bool, str]:
    """Whether `rule` matches, and why, in words (the verdict is `Rule.matches`)."""
    matches = rule.matches(key, content_type)
    under = [p for p in rule.prefixes if key.startswith(p)]
    if not under:
        return matches, f"not under {' or '.join(repr(p) for p in rule.prefixes)}"
    where = f"under {under[0]!r}"
    if not rule.suffixes and not rule.content_types:
        return matches, f"{where}; the rule has no suffix or content-type filter"
    ctype = (content_type or "").split(";")[0].strip().lower()
    suffix = next((s for s in rule.suffixes if key.lower().endswith(s)), None)
    if suffix:
        return matches, f"{where}, suffix {suffix!r}"
    ct = next((c for c in rule.content_types if ctype and ctype.startswith(c)), None)
    if ct:
        return matches, f"{where}, content type {ctype!r} (rule: {ct!r})"
    parts = []
    if rule.suffixes:
        parts.append(f"the suffix is not one of {', '.join(rule.suffixes)}")
    if rule.content_types:
        parts.append(f"the content type {ctype or '(unknown)'!r} is not {' or '.join(rule.content_types)}")
    return matches, f"{where}, but " + " and ".join(parts)


def sample_verdict(rule: Rule, outcome: str) -> Verdict:
    """A representative verdict for one rule outcome, with placeholders for what only CI knows."""
    job_id = "<job id>"
    if outcome == "FAILED":
        return Verdict("FAILED", job_id, reason="<error code>")
    if rule.job == "ImageInspect":
        return Verdict(outcome, job_id, suspicious_type="<payload type>" if outcome == "SUSPICIOUS" else "")
    if rule.job == "VideoTargetRec":
        if outcome == "NONE":
            return Verdict("NONE", job_id, outcomes=("NONE",))
        name = {o: default for _, o, _, default in RECOGNITIONS}.get(outcome, outcome.lower())
        return Verdict("LABELLED", job_id, outcomes=(outcome,), labels=(Label(name, 0.0, 100.0),))
    if outcome == "SUCCESS":
        return Verdict("SUCCESS", job_id, output_key="<output key>")
    return Verdict(outcome, job_id)


def _effects(rule: Rule, v: Verdict, key: str, etag: str, quarantine_prefix: str) -> list[str]:
    """The rule's actions for `v`, in the order ActionRunner applies them, in words."""
    actions, move_prefix = planned_actions(rule, v)
    prefix = quarantine_prefix if "quarantine" in actions else move_prefix
    out = []
    for action in actions:
        if action == "make_private":
            out.append("set the object's ACL to private")
        elif action in ("quarantine", "move") and prefix is not None:
            out.append(f"{action}: copy to {prefix + key!r} (or {prefix}<job id>/{key} if another object is "
                       f"there) if the ETag is still {etag}, then delete the original")
        elif action == "delete":
            out.append("delete the object")
        else:
            out.append(action)
    if rule.job == "ImageInspect" and v.outcome == "SUSPICIOUS" and rule.auto_process:
        out.append(f"CI itself also applies AutoProcess {rule.auto_process}")
    return out


def explain(ctx: Context, key: str, content_type: Optional[str] = None, head: bool = True,
            now: Optional[float] = None) -> dict[str, Any]:
    """What the submit function would do with an upload of `key`, and what each verdict would do.

    Side-effect free: at most a HEAD, a GET of the tags and of the job records. No claim, no tag,
    no CI call.
    """
    now = time.time() if now is None else now
    s, rules = ctx.settings, ctx.rules
    info = ctx.storage.head(ctx.bucket, key) if head else None
    existing = ctx.storage.get_tags(ctx.bucket, key) if info is not None else None
    out: dict[str, Any] = {"bucket": ctx.bucket, "key": key, "rules_source": s.rules_source,
                           "object": None, "content_type": None, "content_type_from": None,
                           "skipped": None, "rules": [], "jobs": []}
    if head:
        out["object"] = {"exists": False} if info is None else {
            "exists": True, "etag": info.etag, "size": info.size, "content_type": info.content_type,
            "tags": existing or {}}
    if content_type:
        out["content_type"], out["content_type_from"] = content_type, "--content-type"
    elif info is not None and info.content_type:
        out["content_type"], out["content_type_from"] = info.content_type, "object"
    ctype = out["content_type"]
    if s.buckets and ctx.bucket not in s.buckets:
        out["skipped"] = "bucket is not in CIFLOW_BUCKETS"
    else:
        out["skipped"] = skip_reason(key, rules, s)
    if out["skipped"] == "outside the watched prefixes":
        out["skipped"] += f" ({', '.join(rules.watched_prefixes)})"
    for rule in rules.rules:
        matched, why = why_rule(rule, key, ctype)
        out["rules"].append({"name": rule.name, "job": rule.job, "matches": matched, "why": why})
    if out["skipped"]:
        return out
    if head and info is None:
        out["note"] = "the object does not exist: an upload event for it would be skipped (object not found); " \
                      "below is what an upload with this key would do"
    matching = rules.matching(key, ctype)
    if not matching:
        out["skipped"] = SKIP_NO_RULE
        return out
    etag = normalize_etag(info.etag) if info is not None else ETAG_PLACEHOLDER
    records = Records.of(ctx.storage, ctx.bucket, s)
    for rule in matching:
        rid = RecordId(key, etag, rule.name)
        result = records.read_result(rid) if info is not None else None
        record = records.read_claim_record(rid) if info is not None else None
        claim = record[0] if record is not None else None
        known = verdict_from_result(result)
        if known is not None:
            state = "done"
            on_upload = (f"no new job: the verdict known for this ETag ({known.outcome}, job {known.job_id or '-'}) "
                         "is applied again at once; `rescan` would submit a new job")
        elif claim is None or result is not None:
            state, on_upload = "new", "claim (key, ETag, rule), tag PENDING, submit this job"
        elif record is not None and in_flight(*record):
            state = "live"
            on_upload = (f"nothing (duplicate): job {claim.get('job_id') or '(being submitted)'} is in flight "
                         f"for this ETag; `rescan` would submit a new one")
        else:
            state = "stale"
            on_upload = ("take over the stale claim: adopt the job if CI already has it, "
                         "else submit this job")
        attempt = 1 if claim is None else int(claim.get("attempts") or 1) + 1
        user_data = UserData(rule=rule.name, etag=etag, attempt=attempt).encode()
        url = ""
        if s.callback_url:
            token = tokens.mint(s.callback_secret, ctx.bucket, key, rule.name, etag, s.token_ttl_seconds, now=now)
            url = callback_url(s.callback_url, token, rule.name, etag)
        request = build_job(rule, key, user_data, url, s.callback_format, ctx.bucket, s.region)
        if url:
            request["CallBack"] = redact_token(request["CallBack"])
        managed = [k for o in rule.outcomes.values() for k, _ in o.tags]
        outcomes: dict[str, Any] = {}
        for name in OUTCOMES.get(rule.job) or tuple(rule.outcomes):
            v = sample_verdict(rule, name)
            ours = [(k, "<seconds>" if k.startswith(tagging.FIRST_SEEN) else val) for k, val in status_tags(rule, v)]
            dropped = tagging.merge(existing or {}, ours, managed)[1]
            outcomes[name] = {"status": v.outcome, "tags": [list(t) for t in ours],
                              "actions": list(rule.outcome(name).actions),
                              "effects": _effects(rule, v, key, etag, rules.quarantine_prefix),
                              "tags_over_limit": dropped}
        out["jobs"].append({
            "rule": rule.name, "job": rule.job, "state": state, "on_upload": on_upload,
            "claim": claim, "result": result, "attempt": attempt,
            "request_for": "upload event or backfill" if state in ("new", "stale") else "rescan",
            "submit_tags": [[tagging.STATUS, "PENDING"], [tagging.RULE, rule.name]],
            "request": request, "outcomes": outcomes,
            "note": "several outcomes can apply to one video; their tags and actions combine (the first "
                    "that moves decides where)" if rule.job == "VideoTargetRec" else ""})
    return out


