"""Naive submit (benchmark reference): tag the upload PENDING, then POST /jobs. Nothing else."""

import os

from naive_common import ci, s3


def main_handler(event, context):
    jobs = []
    for record in event["Records"]:
        cos = record["cos"]
        bucket = f"{cos['cosBucket']['name']}-{cos['cosBucket']['appid']}"
        key = cos["cosObject"]["key"].split("/", 3)[3]
        s3.put_object_tagging(Bucket=bucket, Key=key,
                              Tagging={"TagSet": [{"Key": "ci-status", "Value": "PENDING"}]})
        resp = ci.ci_create_media_jobs(Bucket=bucket, Lst={}, ContentType="application/xml", Jobs={
            "Tag": "ImageInspect", "Input": {"Object": key}, "Operation": {"JobLevel": "0"},
            "CallBack": os.environ["CIFLOW_CALLBACK_URL"], "CallBackFormat": "XML"})
        jobs.append(resp["JobsDetail"][0]["JobId"])
    return {"jobs": jobs}
