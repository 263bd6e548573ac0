"""The floor (benchmark reference): the one request each event cannot do without, and nothing else.
Submit: POST /jobs. Callback: GET /jobs to confirm what the body claims.

`submit_recorded` is the protocol floor of a submit that keeps one job per (key, ETag, rule) and the
checked record the state machine needs (docs/reliability.md): the requests that depend on one another, one
after another, and nothing else. No tags, no marker, no check, no retries: whatever goes beside them in
ciflow's own submit overlaps them."""

import json
import os
from hashlib import md5

import defusedxml.ElementTree as ET
from naive_common import _clients, ci, where

from ciflow.storage import _cos_put_headers

# The protocol floor's own object client, its PUTs in the form ciflow's storage port sends them (its own
# header hook): no `Expect: 100-continue`, and the claim created with COS's conditional header.
s3, _ = _clients()
s3.meta.events.register("before-sign.s3.PutObject", _cos_put_headers)


def submit(event, context):
    cos = event["Records"][0]["cos"]
    bucket = f"{cos['cosBucket']['name']}-{cos['cosBucket']['appid']}"
    key = cos["cosObject"]["key"].split("/", 3)[3]
    return ci.ci_create_media_jobs(Bucket=bucket, Lst={}, ContentType="application/xml", Jobs={
        "Tag": "ImageInspect", "Input": {"Object": key}, "Operation": {"JobLevel": "0"},
        "CallBack": os.environ["CIFLOW_CALLBACK_URL"], "CallBackFormat": "XML"})["JobsDetail"][0]["JobId"]


def callback(event, context):
    detail = ET.fromstring(event["body"]).find("JobsDetail")
    return ci.ci_get_media_jobs(Bucket=detail.findtext("Input/BucketId"),
                                JobIDs=detail.findtext("JobId"))["JobsDetail"][0]["State"]


def submit_recorded(event, context):
    """HEAD (only when the event names no ETag: the claim is keyed by it) -> create the claim -> POST /jobs
    -> record the job and what the check found. Four requests in sequence for the documented COS event,
    three for one that carries meta.ETag."""
    record = event["Records"][0]
    bucket, key = where(record)
    etag = (record["cos"]["cosObject"].get("meta") or {}).get("ETag", "").strip('"')
    if not etag:
        etag = s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    claim = f".bench-floor/{md5(key.encode()).hexdigest()}/{etag}.json"
    s3.put_object(Bucket=bucket, Key=claim, Body=json.dumps({"status": "CLAIMED"}).encode(), IfNoneMatch="*")
    job_id = ci.ci_create_media_jobs(Bucket=bucket, Lst={}, ContentType="application/xml", Jobs={
        "Tag": "ImageInspect", "Input": {"Object": key}, "Operation": {"JobLevel": "0"},
        "CallBack": os.environ["CIFLOW_CALLBACK_URL"], "CallBackFormat": "XML"})["JobsDetail"][0]["JobId"]
    s3.put_object(Bucket=bucket, Key=claim, Body=json.dumps({"status": "SUBMITTED", "job_id": job_id}).encode())
    return job_id
