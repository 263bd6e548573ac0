"""SCF entry point: COS ObjectCreated trigger → submit CI jobs."""

from ciflow.log import bind_invocation
from ciflow.submission import handle_event


def main_handler(event, context):
    bind_invocation(context, "submit")
    return handle_event(event, context)
