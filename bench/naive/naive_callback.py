"""Naive callback (benchmark reference): confirm the job with GET /jobs, tag the verdict, and move a
suspicious upload to quarantine with a copy and a delete. No token, no records, no idempotency."""

import json

import defusedxml.ElementTree as ET
from naive_common import QUARANTINE, ci, s3


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
    return {"isBase64Encoded": False, "statusCode": 200, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"job_id": job_id, "outcome": status})}
