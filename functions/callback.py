"""SCF entry point: CI job callback via Function URL (or API Gateway) → verify and act."""

from ciflow.completion import handle_http
from ciflow.log import bind_invocation


def main_handler(event, context):
    bind_invocation(context, "callback")
    return handle_http(event)
