"""`python -m devstack serve|demo`."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .stack import Stack, StackOptions, write_env_file


def _options(ns: argparse.Namespace) -> StackOptions:
    return StackOptions(key_encoding=ns.key_encoding, callback_format=ns.callback_format,
                        event_shape=ns.event_shape, context_style=ns.context_style, rules_file=ns.rules,
                        event_copies=ns.event_copies, reconcile_every=ns.reconcile_every,
                        reconcile_after=ns.reconcile_after, function_python=ns.function_python,
                        function_root=ns.function_root, no_trigger=ns.no_trigger)


def serve(ns: argparse.Namespace) -> int:
    stack = Stack(_options(ns)).start()
    env = stack.env()
    write_env_file(ns.env_file, env)
    if not ns.quiet:
        print("ciflow local stack is running. Ctrl-C stops it.\n")
        print(f"  S3-compatible object store : {stack.store.endpoint}   (path-style)")
        print(f"  CI emulator (/jobs)         : {stack.emulator.endpoint}")
        print(f"  callback function URL       : {stack.trigger.url}")
        print(f"  buckets                     : {', '.join(stack.bucket_names)}")
        print("  watched prefix              : uploads/ (see the rules)   quarantine: quarantine/")
        print(f"\nValues written to {ns.env_file}; for example:\n")
        print(f"  set -a; source {ns.env_file}; set +a")
        print('  aws s3 cp photo.png "s3://$CIFLOW_DEV_BUCKET/uploads/photo.png"')
        print('  aws s3api get-object-tagging --bucket "$CIFLOW_DEV_BUCKET" --key uploads/photo.png\n')
        sys.stdout.flush()
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    stack.stop()
    if not ns.quiet:
        print("stopped.")
    return 0


def main(argv: list = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devstack")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the local stack in the foreground")
    s.add_argument("--env-file", default=".devstack.env")
    s.add_argument("--quiet", action="store_true")
    s.add_argument("--key-encoding", choices=["raw", "url", "mixed"], default="raw")
    s.add_argument("--callback-format", choices=["XML", "JSON"], default="XML")
    s.add_argument("--event-shape", choices=["function-url", "apigw"], default="function-url")
    s.add_argument("--context-style", choices=["object", "dict"], default="object")
    s.add_argument("--event-copies", type=int, default=1)
    s.add_argument("--rules", default=None, help="rules JSON file for the functions")
    s.add_argument("--reconcile-every", type=float, default=2.0, help="reconcile timer period (0 = off)")
    s.add_argument("--reconcile-after", type=int, default=10, help="CIFLOW_RECONCILE_AFTER_SECONDS")
    s.add_argument("--function-python", metavar="PYTHON",
                   help="run the functions in worker processes of this interpreter (with --function-root)")
    s.add_argument("--function-root", metavar="DIR",
                   help="packaged artifacts laid out as SCF does: DIR/var/user (code) and DIR/opt (layers)")
    s.add_argument("--no-trigger", action="store_true",
                   help="keep the object store running but deliver no COS events (objects uploaded before "
                        "any trigger existed; process them with `python -m ciflow backfill`)")
    d = sub.add_parser("demo", help="start the stack, upload samples, print what happened")
    d.add_argument("--timeout", type=float, default=180)
    c = sub.add_parser("chaos", help="run every fault scenario and print the reliability table")
    c.add_argument("--per-scenario", type=int, default=30)
    c.add_argument("--timeout", type=float, default=90, help="seconds each scenario may take to settle")
    ns = p.parse_args(argv)
    if ns.cmd == "serve" and bool(ns.function_python) != bool(ns.function_root):
        p.error("--function-python and --function-root go together")
    if ns.cmd == "serve":
        return serve(ns)
    if ns.cmd == "chaos":
        from .chaos import main as chaos_main

        return chaos_main(ns)
    from .demo import run_demo

    return run_demo(ns)


if __name__ == "__main__":
    sys.exit(main())
