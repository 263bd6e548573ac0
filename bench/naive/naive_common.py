"""The common way such handlers are written, kept only as a benchmark reference (never deployed)."""

import os

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer  # noqa: F401
from aws_lambda_powertools.event_handler import APIGatewayRestResolver  # noqa: F401
from aws_lambda_powertools.utilities.idempotency import (  # noqa: F401
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent,
)
from aws_lambda_powertools.utilities.parser import BaseModel, event_parser  # noqa: F401
from qcloud_cos import CosConfig, CosS3Client

logger = Logger(service="naive")


def clients():
    """What every invocation builds anew: an S3 client and a CI client."""
    region = os.environ["CIFLOW_REGION"]
    s3 = boto3.client("s3", region_name=region, endpoint_url=f"https://cos.{region}.myqcloud.com",
                      aws_access_key_id=os.environ["TENCENTCLOUD_SECRETID"],
                      aws_secret_access_key=os.environ["TENCENTCLOUD_SECRETKEY"],
                      aws_session_token=os.environ["TENCENTCLOUD_SESSIONTOKEN"])
    ci = CosS3Client(CosConfig(Region=region, SecretId=os.environ["TENCENTCLOUD_SECRETID"],
                               SecretKey=os.environ["TENCENTCLOUD_SECRETKEY"],
                               Token=os.environ["TENCENTCLOUD_SESSIONTOKEN"]))
    return s3, ci
