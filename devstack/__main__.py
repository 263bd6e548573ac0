"""`python -m devstack serve|demo`."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any, Optional

from .objectstore import (
    COPY_LIMIT_BYTES,
    DELETE_IF_MATCH,
    EVENT_FORMS,
    IF_NONE_MATCH,
    KEY_ENCODINGS,
    S3_COPY_CONDITIONS,
    VERSIONING,
)
from .stack import Stack, StackOptions, write_env_file


def _options(ns: argparse.Namespace) -> StackOptions:
    return StackOptions(buckets=ns.buckets, key_encoding=ns.key_encoding, callback_format=ns.callback_format,
                        event_shape=ns.event_shape, context_style=ns.context_style, rules_file=ns.rules,
                        event_copies=ns.event_copies, event_form=ns.event_form, if_none_match=ns.if_none_match,
                        s3_copy_conditions=ns.s3_copy_conditions, copy_limit_bytes=ns.copy_limit_bytes,
                        delete_if_match=ns.delete_if_match,
                        versioning=dict(ns.versioning), callback_user_data=ns.callback_user_data,
                        clock_offsets=dict(ns.clock_offset), reconcile_every=ns.reconcile_every,
                        reconcile_after=ns.reconcile_after, function_python=ns.function_python,
                        function_root=ns.function_root, no_trigger=ns.no_trigger, state_bucket=ns.state_bucket)


def _pair(kind: str, choices: Optional[tuple[str, ...]] = None) -> Any:
    """An argparse type for NAME=VALUE."""

    def parse(text: str) -> tuple[str, Any]:
        name, sep, value = text.partition("=")
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"expected NAME={kind}, got {text!r}")
        if choices is not None:
            if value not in choices:
                raise argparse.ArgumentTypeError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
            return name, value
        try:
            return name, float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: expected {kind}, got {value!r}") from None

    return parse


def _size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size in bytes, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a size >= 0, got {value}")
    return value


def _buckets(text: str) -> list[str]:
    names = [b.strip() for b in text.split(",") if b.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected at least one bucket name")
    return names


def _add_switches(s: argparse.ArgumentParser) -> None:
    g = s.add_argument_group(
        "platform switches",
        "Platform behaviour that is not verified, and settings the tests run in every variant. Defaults are "
        "the setting least favourable to the functions, except where a switch says otherwise. Most can also "
        "be changed while the stack runs: POST JSON to $CIFLOW_DEV_CONFIG, e.g. "
        '{"if_none_match": "honour", "versioning": {"uploads": "Enabled"}}; '
        "the CI emulator's through $CIFLOW_DEV_CI_ADMIN/config.")
    g.add_argument("--key-encoding", choices=list(KEY_ENCODINGS), default="raw",
                   help="how the object key appears in COS events' cosObject.key (default: %(default)s)")
    g.add_argument("--event-form", choices=list(EVENT_FORMS), default="documented",
                   help="documented: exactly the documented event's fields; logged: also meta.ETag, "
                        "meta.x-cos-storage-class, vid, s3Region, cosRegion and reqid (default: %(default)s)")
    g.add_argument("--event-copies", type=int, default=1,
                   help="deliver each COS event N times (delivery is at-least-once; default: %(default)s)")
    g.add_argument("--if-none-match", choices=list(IF_NONE_MATCH), default="ignore",
                   help="S3's If-None-Match: * on PUT; whether COS honours, ignores or rejects it is "
                        "unverified (default: %(default)s)")
    g.add_argument("--s3-copy-conditions", choices=list(S3_COPY_CONDITIONS), default="honour",
                   help="the S3 spelling x-amz-copy-source-if-(none-)match on copies (unverified; COS's own "
                        "x-cos-copy-source-If-(None-)Match is always honoured). Default %(default)s, because the "
                        "functions send only the S3 spelling today; ignore is the stricter setting")
    g.add_argument("--delete-if-match", choices=list(DELETE_IF_MATCH), default="ignore",
                   help="S3's If-Match on DELETE Object (S3 since 2025-09); whether COS honours, ignores or "
                        "rejects it is unverified (default: %(default)s, as COS documents none)")
    g.add_argument("--copy-limit-bytes", type=_size, default=COPY_LIMIT_BYTES, metavar="BYTES",
                   help="largest source of PUT Object - Copy; larger gives 400 EntityTooLarge "
                        "(COS: 5 GB; default: %(default)s)")
    g.add_argument("--versioning", type=_pair("Enabled|Suspended", VERSIONING), action="append", default=[],
                   metavar="BUCKET=Enabled|Suspended",
                   help="turn versioning on for a bucket (short name; repeatable). On such buckets "
                        "x-cos-forbid-overwrite has no effect and deletes leave earlier versions readable")
    g.add_argument("--callback-user-data", choices=["omit", "echo"], default=None,
                   help="whether CI callbacks carry Operation.UserData (the documented callback has none; "
                        "default: the CI emulator's)")
    g.add_argument("--clock-offset", type=_pair("SECONDS"), action="append", default=[],
                   metavar="FUNCTION=SECONDS",
                   help="run a function (submit, callback, reconcile) with its clock this far ahead "
                        "(negative: behind); repeatable")


def serve(ns: argparse.Namespace) -> int:
    try:
        stack = Stack(_options(ns)).start()
    except ValueError as exc:
        print(f"python -m devstack serve: {exc}", file=sys.stderr)
        return 2
    env = stack.env()
    write_env_file(ns.env_file, env)
    logs = None
    if not ns.quiet and not ns.json:
        from .narrate import Narrator, log_to_file

        logs = log_to_file(ns.log_file)
        stack.host.observers.append(Narrator(sys.stdout, _rules_for(stack)))
    if not ns.quiet:
        print("ciflow local stack is running. Ctrl-C stops it.\n")
        print(f"  S3-compatible object store : {stack.store.endpoint}   (path-style)")
        print(f"  CI emulator (/jobs)         : {stack.emulator.endpoint}")
        print(f"  callback function URL       : {stack.trigger.url}")
        print(f"  buckets                     : {', '.join(stack.bucket_names)}")
        for name, status in stack.o.versioning.items():
            print(f"  versioning                  : {name}-{stack.o.appid} {status}")
        print("  watched prefix              : uploads/ (see the rules)   quarantine: quarantine/")
        print(f"\nValues written to {ns.env_file}; for example:\n")
        print(f"  set -a; source {ns.env_file}; set +a")
        print('  aws s3 cp photo.png "s3://$CIFLOW_DEV_BUCKET/uploads/photo.png"')
        print('  aws s3api get-object-tagging --bucket "$CIFLOW_DEV_BUCKET" --key uploads/photo.png\n')
        if logs is not None:
            print(f"What happens to each file is shown below; the functions' JSON logs go to {ns.log_file} "
                  "(--json shows them here instead).\n")
        sys.stdout.flush()
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    stack.stop()
    if logs is not None:
        logs.close()
    if not ns.quiet:
        print("stopped.")
    return 0


def _rules_for(stack: Stack) -> Any:
    """The rules the functions run with (to name each job's type), or None."""
    try:
        from ciflow.rules import get_rules

        return get_rules()
    except Exception:  # noqa: BLE001 - narration falls back to "CI job"
        return None


def main(argv: list = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devstack")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the local stack in the foreground")
    s.add_argument("--env-file", default=".devstack.env")
    s.add_argument("--quiet", action="store_true")
    s.add_argument("--state-bucket", default=None, metavar="NAME",
                   help="keep the functions' records in this bucket (short name; created, never versioned): "
                        "CIFLOW_STATE_BUCKET, for buckets whose versioning is Suspended")
    s.add_argument("--json", action="store_true",
                   help="print the functions' JSON logs here instead of one human line per event")
    s.add_argument("--log-file", default=".devstack.log",
                   help="where the functions' JSON logs go (default: %(default)s)")
    s.add_argument("--buckets", type=_buckets, default=["uploads", "other"], metavar="NAME,NAME",
                   help="bucket short names; each becomes <name>-<appid> (default: uploads,other)")
    s.add_argument("--callback-format", choices=["XML", "JSON"], default="XML")
    s.add_argument("--event-shape", choices=["function-url", "apigw"], default="function-url")
    s.add_argument("--context-style", choices=["object", "dict"], default="object")
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
    _add_switches(s)
    d = sub.add_parser("demo", help="start the stack, upload samples, print what happened")
    d.add_argument("--timeout", type=float, default=180)
    c = sub.add_parser("chaos", help="run every fault scenario and print the reliability table")
    c.add_argument("--per-scenario", type=int, default=30)
    c.add_argument("--timeout", type=float, default=90, help="seconds each scenario may take to settle")
    ns = p.parse_args(argv)
    if ns.cmd == "serve" and bool(ns.function_python) != bool(ns.function_root):
        p.error("--function-python and --function-root go together")
    if ns.cmd == "serve" and set(dict(ns.versioning)) - set(ns.buckets):
        p.error(f"--versioning names a bucket not in --buckets ({', '.join(ns.buckets)})")
    if ns.cmd == "serve":
        return serve(ns)
    if ns.cmd == "chaos":
        from .chaos import main as chaos_main

        return chaos_main(ns)
    from .demo import run_demo

    return run_demo(ns)


if __name__ == "__main__":
    sys.exit(main())
