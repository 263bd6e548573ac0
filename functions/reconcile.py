"""SCF entry point: timer trigger → re-check jobs whose callbacks never arrived."""

from ciflow.log import bind_invocation
from ciflow.reconcile import handle_timer


def main_handler(event, context):
    bind_invocation(context, "reconcile")
    return handle_timer(event, context)
