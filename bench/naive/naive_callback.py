"""Naive callback (benchmark reference, the one the budgets are judged against): confirm the job with
GET /jobs, read the upload's tags, and write the verdict merged into them; a suspicious upload is
instead copied to quarantine with the merged tags in the copy (`TaggingDirective: REPLACE`, so no
separate tag write) and then deleted. No token, no records, no idempotency; one request after another,
as a plain handler writes it."""

from urllib.parse import urlencode

import defusedxml.ElementTree as ET
from naive_common import QUARANTINE, ci, merged, response, s3


def main_handler(event, context):
    detail = ET.fromstring(event["body"]).find("JobsDetail")
    job_id, bucket = detail.findtext("JobId"), detail.findtext("Input/BucketId")
    job = ci.ci_get_media_jobs(Bucket=bucket, JobIDs=job_id)["JobsDetail"][0]
    key = job["Input"]["Object"]
    result = job["Operation"]["ImageInspectResult"]["ProcessResult"]
    suspicious = str(result.get("Suspicious", "")).lower() == "true"
    status = "SUSPICIOUS" if suspicious else "CLEAN"
    tags = merged(s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"],
                  {"ci-status": status, "ci-job-id": job_id})
    if suspicious:
        s3.copy_object(Bucket=bucket, Key=QUARANTINE + key, CopySource={"Bucket": bucket, "Key": key},
                       MetadataDirective="COPY", TaggingDirective="REPLACE",
                       Tagging=urlencode([(t["Key"], t["Value"]) for t in tags]))
        s3.delete_object(Bucket=bucket, Key=key)
    else:
        s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": tags})
    return response(job_id, status)
