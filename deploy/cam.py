"""The CAM policy of the functions' execution role, derived from the calls the library makes.

`sdk_calls()` reads `layers/ciflow/ciflow/**/*.py` with `ast` and lists every SDK call: any method
called on a client (`client`, `self.client`, `self._client`, `*_client()`), and any call, whatever
the receiver, of an S3 operation (from botocore's model) or of a `ci_*` method. `ACTIONS` is the one
table that maps each call to the CAM actions it needs. A call missing from the table stops the
generator, so the policy cannot silently fall behind the code.

Resources are scoped to the bucket and to ciflow's prefixes: the rules' watched prefixes, the
quarantine prefix and the state prefix. When `.env` sets CIFLOW_STATE_BUCKET (deploy/state.py), the
functions keep their records in that bucket, so the record operations (the object actions, and
listing limited by `cos:prefix`) are granted on its state prefix too. The watched bucket keeps its
state prefix: the operator's backfill and rescan checkpoints live there (ciflow/operations/runs.py),
and docs/operating.md gives the operator this policy. The committed template, with placeholders, is
the policy without a state bucket.

TDMQ deliveries (deploy/tdmq.py) need nothing from the functions' role: a cmq trigger invokes the
callback function, and reconcile finishes queue-mode jobs with GET /jobs without reading the queue.
They need grants elsewhere, each in a policy of its own because each goes to another principal:

- CI publishes each result to the topic or queue (`tdmq:PublishCmqMsg`, `tdmq:SendCmqMsg`), as
  CI's service role CI_QCSRole (cam-policy-tdmq-ci.json);
- creating and removing the cmq trigger subscribes the function to the topic and unsubscribes it
  (`tdmq:CreateCmqSubscribe`, `tdmq:DeleteCmqSubscribe`), which the deploying identity does
  (cam-policy-tdmq-trigger.json).

Which principal CI publishes as, and which one SCF's CreateTrigger checks, are not documented in
our sources (docs/deploy.md, "Results through TDMQ").

    python -m deploy.cam   # deploy/cam-policy*.json with <Region>-style placeholders, and
                           # dist/cam-policy*.json filled in from .env, ready for the CAM console
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import dotenv, state, tdmq

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "layers" / "ciflow" / "ciflow"
POLICY = ROOT / "deploy" / "cam-policy.json"
FILLED = ROOT / "dist" / "cam-policy.json"
TDMQ_POLICIES = {"ci": "cam-policy-tdmq-ci.json", "trigger": "cam-policy-tdmq-trigger.json"}
CI_ROLE = "CI_QCSRole"  # the role CI itself uses to read and write COS on the user's behalf

#: SDK call -> the CAM actions it needs. boto3 (S3 API on COS) and cos-python-sdk-v5 (CI) calls.
ACTIONS: dict[str, tuple[str, ...]] = {
    "head_object": ("cos:HeadObject",),
    "get_object": ("cos:GetObject",),
    "put_object": ("cos:PutObject",),
    "copy_object": ("cos:GetObject", "cos:PutObject"),  # reads the source, writes the destination
    "delete_object": ("cos:DeleteObject",),
    "get_object_tagging": ("cos:GetObjectTagging",),
    "put_object_tagging": ("cos:PutObjectTagging",),
    "delete_object_tagging": ("cos:DeleteObjectTagging",),
    "get_object_acl": ("cos:GetObjectACL",),
    "put_object_acl": ("cos:PutObjectACL",),
    "list_objects": ("cos:GetBucket",),
    "list_objects_v2": ("cos:GetBucket",),
    # Versioned buckets: claims are arbitrated by versions, and suspicious bytes deleted by version.
    "list_object_versions": ("cos:GetBucketObjectVersions",),
    # The operator's check-config and status report whether a bucket is versioned.
    "get_bucket_versioning": ("cos:GetBucketVersioning",),
    # Moves above COS's 5 GB single-copy limit are copied in parts (CAM names per COS API; unverified).
    "create_multipart_upload": ("cos:InitiateMultipartUpload",),
    "upload_part_copy": ("cos:GetObject", "cos:UploadPartCopy"),
    "complete_multipart_upload": ("cos:CompleteMultipartUpload",),
    "abort_multipart_upload": ("cos:AbortMultipartUpload",),
    # Submitting a job lets CI act on the bucket through CI_QCSRole, which needs cam:PassRole.
    "ci_create_media_jobs": ("ci:CreateMediaJobs", "cam:PassRole"),
    "ci_get_media_jobs": ("ci:DescribeMediaJob",),
    "ci_list_media_jobs": ("ci:DescribeMediaJobs",),
    "ci_cancel_jobs": ("ci:CancelMediaJob",),
    # Raw SDK requests, named by method and path.
    "send_request GET /jobs": ("ci:DescribeMediaJobs",),
}
BUCKET_ACTIONS = {"cos:GetBucket", "cos:GetBucketObjectVersions"}
# Bucket configuration reads: bucket-level, and carrying no prefix for a condition to match.
BUCKET_CONFIG_ACTIONS = {"cos:GetBucketVersioning"}

PLACEHOLDERS = {"region": "<Region>", "appid": "<APPID>", "bucket": "<BucketName-APPID>", "uin": "<OwnerUin>"}

#: TDMQ for CMQ. CI delivering a result: publishing to a topic or sending to a queue (TDMQ API 3.0
#: PublishCmqMsg and SendCmqMsg). The cmq trigger: SCF subscribes the function to the topic when it
#: is created, and unsubscribes it when it is removed (a redeploy without it, `scf remove`).
TDMQ_DELIVER = {"Topic": "tdmq:PublishCmqMsg", "Queue": "tdmq:SendCmqMsg"}
TDMQ_TRIGGER = ("tdmq:CreateCmqSubscribe", "tdmq:DeleteCmqSubscribe")
TDMQ_PLACEHOLDERS = (tdmq.Use("", "<MqRegion>", "Topic", "<TopicName>"),
                     tdmq.Use("", "<MqRegion>", "Queue", "<QueueName>"))


class UnmappedCall(Exception):
    """The library calls an SDK method that ACTIONS does not map to CAM actions."""


@dataclass(frozen=True)
class SdkCall:
    name: str
    where: str


def _is_client(node: ast.expr) -> bool:
    """`client`, `self.client`, `self._client` or `s3_client()`: the ways the library reaches an SDK client."""
    if isinstance(node, ast.Call):
        node = node.func
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return name in ("client", "_client") or name.endswith("_client")


@functools.lru_cache(maxsize=1)
def s3_operations() -> frozenset[str]:
    """boto3's S3 method names (head_object, put_object_tagging, ...), from botocore's service model."""
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model("s3")
    return frozenset(xform_name(op) for op in model.operation_names)


def _is_sdk_call(node: ast.AST) -> bool:
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return False
    name = node.func.attr
    return _is_client(node.func.value) or name.startswith("ci_") or name in s3_operations()


def _const(node: Optional[ast.expr]) -> Optional[str]:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _kwarg(call: ast.Call, name: str) -> Optional[str]:
    return next((_const(k.value) for k in call.keywords if k.arg == name), None)


def _raw_request(call: ast.Call, scope: ast.AST) -> str:
    """`send_request GET /jobs`: the method, and the one `path=` string passed in the same function."""
    paths = {_kwarg(c, "path") for c in ast.walk(scope) if isinstance(c, ast.Call)} - {None}
    method = _kwarg(call, "method")
    return f"send_request {method} {paths.pop()}" if method and len(paths) == 1 else "send_request"


def sdk_calls(library: Path = LIBRARY) -> list[SdkCall]:
    """Every method called on an SDK client in the library, in file and line order."""
    calls: list[tuple[int, SdkCall]] = []
    for path in sorted(library.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        scopes = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for node in ast.walk(tree):
            if not _is_sdk_call(node):
                continue
            assert isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            name = node.func.attr
            if name == "get_paginator":
                name = (_const(node.args[0]) if node.args else None) or name
            elif name == "send_request":
                scope = min((s for s in scopes if s.lineno <= node.lineno <= (s.end_lineno or s.lineno)),
                            key=lambda s: (s.end_lineno or s.lineno) - s.lineno, default=tree)
                name = _raw_request(node, scope)
            shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            calls.append((node.lineno, SdkCall(name, f"{shown}:{node.lineno}")))
    return [call for _, call in sorted(calls, key=lambda c: (c[1].where.split(":")[0], c[0]))]


def required_actions(calls: list[SdkCall]) -> set[str]:
    unmapped = [c for c in calls if c.name not in ACTIONS]
    if unmapped:
        raise UnmappedCall("SDK calls with no CAM mapping; add them to ACTIONS in deploy/cam.py:\n  "
                           + "\n  ".join(f"{c.name}  ({c.where})" for c in unmapped))
    return {action for c in calls for action in ACTIONS[c.name]}


def ciflow_prefixes(env: Mapping[str, str], rules_file: Optional[Path] = None) -> list[str]:
    """Watched, quarantine and state prefixes, as the functions will compute them from `env`."""
    from ciflow.rules import parse_rules
    from ciflow.settings import DEFAULT_RULES_FILE

    state = (env.get("CIFLOW_STATE_PREFIX", "").strip() or ".ciflow/").rstrip("/") + "/"
    path = rules_file or Path(DEFAULT_RULES_FILE)
    rules = parse_rules(path.read_text(encoding="utf-8"), str(path), state)
    return [*rules.watched_prefixes, rules.quarantine_prefix, state]


def _prefix_statements(objects: list[str], listing: list[str], bucket_res: str, prefixes: list[str]) -> list[dict]:
    """Object actions on `prefixes` of a bucket, and listing it limited to them."""
    out = []
    if objects:
        out.append({"effect": "allow", "action": [f"name/{a}" for a in objects],
                    "resource": [f"{bucket_res}/{p}*" for p in prefixes]})
    if listing:
        out.append({"effect": "allow", "action": [f"name/{a}" for a in listing],
                    "resource": [f"{bucket_res}/*"],
                    "condition": {"string_like": {"cos:prefix": [f"{p}*" for p in prefixes]}}})
    return out


def policy(actions: set[str], prefixes: list[str], region: str, appid: str, bucket: str, uin: str,
           state_bucket: str = "") -> dict:
    """The CAM policy document: object actions on ciflow's prefixes, listing limited to them,
    reading the bucket's configuration, CI actions on the bucket, and passing CI_QCSRole to CI.
    With `state_bucket`, the state prefix (the last of `prefixes`) is granted in that bucket as well:
    the functions' records live there."""
    bucket_res = f"qcs::cos:{region}:uid/{appid}:{bucket}"
    objects = sorted(a for a in actions if a.startswith("cos:") and a not in BUCKET_ACTIONS | BUCKET_CONFIG_ACTIONS)
    listing = sorted(a for a in actions if a in BUCKET_ACTIONS)
    config = sorted(a for a in actions if a in BUCKET_CONFIG_ACTIONS)
    ci = sorted(a for a in actions if a.startswith("ci:"))
    statements = _prefix_statements(objects, listing, bucket_res, prefixes)
    if state_bucket:
        state_res = f"qcs::cos:{region}:uid/{state.appid_of(state_bucket) or appid}:{state_bucket}"
        statements += _prefix_statements(objects, listing, state_res, prefixes[-1:])
    if config:
        statements.append({"effect": "allow", "action": [f"name/{a}" for a in config],
                           "resource": [f"{bucket_res}/*"]})
    if ci:
        statements.append({"effect": "allow", "action": [f"name/{a}" for a in ci],
                           "resource": [f"qcs::ci:{region}:uid/{appid}:bucket/{bucket}/*"]})
    if "cam:PassRole" in actions:
        statements.append({"effect": "allow", "action": ["name/cam:PassRole"],
                           "resource": [f"qcs::cam::uin/{uin}:roleName/{CI_ROLE}"]})
    return {"version": "2.0", "statement": statements}


def policy_actions(doc: dict) -> set[str]:
    return {a.removeprefix("name/") for s in doc["statement"] for a in s["action"]}


def generate(env: Optional[Mapping[str, str]] = None, rules_file: Optional[Path] = None) -> dict:
    """The policy for `env`'s region, APPID, bucket, UIN and state bucket, or with placeholders (and
    the records beside the objects) when `env` is None. Raises state.StateConfigError."""
    values = PLACEHOLDERS if env is None else {
        "region": env["CIFLOW_REGION"], "appid": env["CIFLOW_APPID"], "bucket": env["CIFLOW_BUCKET"],
        "uin": env["CIFLOW_OWNER_UIN"]}
    refused = state.problems(env or {})
    if refused:
        raise state.StateConfigError(refused)
    return policy(required_actions(sdk_calls()), ciflow_prefixes(env or {}, rules_file), **values,
                  state_bucket=state.bucket(env or {}))


def _tdmq_resources(use: tdmq.Use, uin: str, kind: str) -> list[str]:
    # TDMQ CMQ's CAM page names topics `topic/<name>` and queues `queue/<name>`; CAM's own table of
    # TDMQ resources `cmqtopic/<name>` and `cmqqueue/<name>`. Which CAM evaluates is not verified, so
    # both are listed: a form that matches nothing grants nothing.
    base = f"qcs::tdmq:{tdmq.full_region(use.region)}:uin/{uin}:"
    if kind == "subscription":
        return [f"{base}subscription/{use.name}/*"]
    return [f"{base}{kind}/{use.name}", f"{base}cmq{kind}/{use.name}"]


def tdmq_policies(uses: tuple[tdmq.Use, ...], uin: str) -> dict[str, dict]:
    """The policy documents TDMQ deliveries need, by who needs them ("ci", "trigger"); none when no
    rule or setting uses TDMQ, and no "trigger" without a topic."""
    docs: dict[str, dict] = {}
    deliver = []
    for mode, kind in (("Topic", "topic"), ("Queue", "queue")):
        chosen = [u for u in uses if u.mode == mode]
        if chosen:
            deliver.append({"effect": "allow", "action": [f"name/{TDMQ_DELIVER[mode]}"],
                            "resource": [r for u in chosen for r in _tdmq_resources(u, uin, kind)]})
    if deliver:
        docs["ci"] = {"version": "2.0", "statement": deliver}
    topics = [u for u in uses if u.mode == "Topic"]
    if topics:
        create, delete = TDMQ_TRIGGER
        docs["trigger"] = {"version": "2.0", "statement": [
            {"effect": "allow", "action": [f"name/{create}"],
             "resource": [r for u in topics for r in _tdmq_resources(u, uin, "topic")]},
            {"effect": "allow", "action": [f"name/{delete}"],
             "resource": [r for u in topics for r in _tdmq_resources(u, uin, "subscription")]}]}
    return docs


def generate_tdmq(env: Optional[Mapping[str, str]] = None, rules_file: Optional[Path] = None) -> dict[str, dict]:
    """tdmq_policies for the deliveries `env` and the rules choose, or with placeholders when `env` is
    None. Raises tdmq.TdmqConfigError."""
    if env is None:
        return tdmq_policies(TDMQ_PLACEHOLDERS, PLACEHOLDERS["uin"])
    uses = tdmq.selection(env, rules_file or tdmq.DEPLOYED_RULES).uses
    return tdmq_policies(uses, env["CIFLOW_OWNER_UIN"])


def render(doc: dict) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _write(out: Path, doc: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(doc), encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}: {len(policy_actions(doc))} actions")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deploy.cam", description=__doc__.split("\n\n")[0])
    p.add_argument("--rules", type=Path, help="rules JSON file (default: the bundled rules)")
    p.add_argument("--env-file", type=Path, default=dotenv.ENV_FILE)
    ns = p.parse_args(argv)
    env = dotenv.load(ns.env_file)
    try:
        _write(POLICY, generate(rules_file=ns.rules))
        for who, doc in generate_tdmq().items():
            _write(POLICY.parent / TDMQ_POLICIES[who], doc)
        absent = dotenv.missing(env, ["CIFLOW_REGION", "CIFLOW_APPID", "CIFLOW_BUCKET", "CIFLOW_OWNER_UIN"])
        if absent:
            print(f"set {', '.join(absent)} in {ns.env_file.name} to also get {FILLED.relative_to(ROOT)} "
                  "with your values filled in")
            return 0
        _write(FILLED, generate(env, ns.rules))
        tdmq_docs = generate_tdmq(env, ns.rules)
    except UnmappedCall as exc:
        print(f"cam: {exc}", file=sys.stderr)
        return 1
    except tdmq.TdmqConfigError as exc:
        print("cam: the TDMQ deliveries cannot be deployed:\n  - " + "\n  - ".join(exc.problems), file=sys.stderr)
        return 1
    except state.StateConfigError as exc:
        print("cam: the record location cannot be deployed:\n  - " + "\n  - ".join(exc.problems), file=sys.stderr)
        return 1
    for name in TDMQ_POLICIES.values():  # a policy from an earlier configuration must not linger
        (FILLED.parent / name).unlink(missing_ok=True)
    for who, doc in tdmq_docs.items():
        _write(FILLED.parent / TDMQ_POLICIES[who], doc)
    print("  the functions' role: dist/cam-policy.json (TDMQ deliveries add nothing to it)")
    if state.bucket(env):
        print(f"  the records: in {state.bucket(env)} under {ciflow_prefixes(env, ns.rules)[-1]}, granted there "
              "(CIFLOW_STATE_BUCKET)")
    if "ci" in tdmq_docs:
        print(f"  CI's role {CI_ROLE}, to publish the results: dist/{TDMQ_POLICIES['ci']}")
    if "trigger" in tdmq_docs:
        print(f"  the identity that deploys, to create the cmq trigger: dist/{TDMQ_POLICIES['trigger']} "
              "(docs/deploy.md, \"Results through TDMQ\")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
