"""A plain SCF handler's setup, kept only as a benchmark reference (never deployed).

What a careful developer writes without ciflow: the two SDKs, clients built once per container from
the role's credentials (as every SCF sample does), no idempotency, no records, no powertools. The
endpoints come from the same variables ciflow reads, so both go through the same local stack.
"""

import json
import os
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from qcloud_cos import CosConfig, CosS3Client

QUARANTINE = "quarantine/"


def _clients():
    region = os.environ["CIFLOW_REGION"]
    sid, skey = os.environ["TENCENTCLOUD_SECRETID"], os.environ["TENCENTCLOUD_SECRETKEY"]
    token = os.environ.get("TENCENTCLOUD_SESSIONTOKEN")
    endpoint = os.environ.get("CIFLOW_S3_ENDPOINT") or f"https://cos.{region}.myqcloud.com"
    local = (urlsplit(endpoint).hostname or "").replace(".", "").isdigit()
    s3 = boto3.client("s3", region_name=region, endpoint_url=endpoint, aws_access_key_id=sid,
                      aws_secret_access_key=skey, aws_session_token=token,
                      config=Config(signature_version="s3v4", s3={"addressing_style": "path" if local else "virtual"},
                                    # COS does not implement botocore's default flexible checksums
                                    request_checksum_calculation="when_required",
                                    response_checksum_validation="when_required"))
    ci_kwargs = {"Region": region, "SecretId": sid, "SecretKey": skey, "Token": token}
    ci_endpoint = os.environ.get("CIFLOW_CI_ENDPOINT", "")
    if "://" in ci_endpoint:
        parts = urlsplit(ci_endpoint)
        ci_kwargs.update(Scheme=parts.scheme, IP=parts.hostname, Port=parts.port)
    return s3, CosS3Client(CosConfig(**ci_kwargs))


s3, ci = _clients()


def clients():
    """The module's clients (built at import, as a container's init phase does)."""
    return s3, ci


def where(record):
    """(bucket, key) of a COS event record: `<name>-<appid>` and the key after `/<appid>/<name>/`."""
    cos = record["cos"]
    return f"{cos['cosBucket']['name']}-{cos['cosBucket']['appid']}", cos["cosObject"]["key"].split("/", 3)[3]


def merged(tag_set, new):
    """The object's tag set (as GET tagging returns it) with `new` written over it: the user's tags stay."""
    return [t for t in tag_set if t["Key"] not in new] + [{"Key": k, "Value": v} for k, v in new.items()]


def response(job_id, outcome):
    """The Function URL answer."""
    return {"isBase64Encoded": False, "statusCode": 200, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"job_id": job_id, "outcome": outcome})}
