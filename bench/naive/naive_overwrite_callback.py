"""Naive callback that overwrites the object's tags (benchmark reference, second column): GET /jobs,
PUT a tag set holding only the verdict, and for a suspicious upload a copy to quarantine (which copies
that set) and a delete. The user's tags are lost; see `naive_overwrite_submit.py`."""

import defusedxml.ElementTree as ET
from naive_common import QUARANTINE, ci, response, s3


def main_handler(event, context):
    detail = ET.fromstring(event["body"]).find("JobsDetail")
    job_id, bucket = detail.findtext("JobId"), detail.findtext("Input/BucketId")
    job = ci.ci_get_media_jobs(Bucket=bucket, JobIDs=job_id)["JobsDetail"][0]
    key = job["Input"]["Object"]
    result = job["Operation"]["ImageInspectResult"]["ProcessResult"]
    suspicious = str(result.get("Suspicious", "")).lower() == "true"
    status = "SUSPICIOUS" if suspicious else "CLEAN"
    s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": [
        {"Key": "ci-status", "Value": status}, {"Key": "ci-job-id", "Value": job_id}]})
    if suspicious:
        s3.copy_object(Bucket=bucket, Key=QUARANTINE + key, CopySource={"Bucket": bucket, "Key": key})
        s3.delete_object(Bucket=bucket, Key=key)
    return response(job_id, status)
