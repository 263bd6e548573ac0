"""SCF entry point: a job's result from CI → verify and act.

Two triggers reach it: the Function URL (CI's HTTP callback, or the legacy API Gateway event) and,
for rules that deliver through TDMQ, a CMQ topic trigger.
"""

from ciflow.completion import handle_http
from ciflow.log import bind_invocation
from ciflow.queue_delivery import handle_queue, is_queue_event


def main_handler(event, context):
    bind_invocation(context, "callback")
    if is_queue_event(event):
        return handle_queue(event)
    return handle_http(event)
