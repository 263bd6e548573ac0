"""The floor (benchmark reference): the one request each event cannot do without, and nothing else.
Submit: POST /jobs. Callback: GET /jobs to confirm what the body claims."""

import os

import defusedxml.ElementTree as ET
from naive_common import ci


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
