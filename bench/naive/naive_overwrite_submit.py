"""Naive submit that overwrites the object's tags (benchmark reference, second column): PUT a tag set
holding only `ci-status=PENDING`, then POST /jobs. `PutObjectTagging` replaces the whole set, so this
drops every tag the user had set: shown beside the fair handler (`naive_submit.py`) so the budgets'
reference can be compared with the cheapest handler one could write, never judged against."""

import os

from naive_common import ci, s3, where


def main_handler(event, context):
    jobs = []
    for record in event["Records"]:
        bucket, key = where(record)
        s3.put_object_tagging(Bucket=bucket, Key=key,
                              Tagging={"TagSet": [{"Key": "ci-status", "Value": "PENDING"}]})
        resp = ci.ci_create_media_jobs(Bucket=bucket, Lst={}, ContentType="application/xml", Jobs={
            "Tag": "ImageInspect", "Input": {"Object": key}, "Operation": {"JobLevel": "0"},
            "CallBack": os.environ["CIFLOW_CALLBACK_URL"], "CallBackFormat": "XML"})
        jobs.append(resp["JobsDetail"][0]["JobId"])
    return {"jobs": jobs}
