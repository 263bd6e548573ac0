"""Naive reference submit handler: eager imports, new clients per invocation (benchmark only)."""

import json  # noqa: F401

import defusedxml.ElementTree  # noqa: F401
from naive_common import clients, logger


def main_handler(event, context):
    s3, ci = clients()
    logger.info("event", extra={"event": event})
    return {"ok": True}
