"""Warm CPU per event, measured in this process against the local stack in another process.

`python bench/warm.py <env-file> <events> <out.json>`: uploads `events` images under `bench/`,
then invokes the real submit handler once per COS event, and later the real callback handler once
per finished job, timing each invocation with `time.process_time()` (this process only; the object
store and the CI emulator run in the stack's process). Clients are warm: a few untimed invocations
come first, as in a warm SCF container.
"""

import json
import os
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "functions"), os.path.join(ROOT, "layers", "ciflow"), ROOT]

RULES = {"version": 1, "rules": [{"name": "bench-images", "job": "ImageInspect", "prefixes": ["bench/"],
                                  "suffixes": [".png"],
                                  "outcomes": {"SUSPICIOUS": {"actions": ["quarantine"]}}}]}
WARMUP = 5


def _json(url: str):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def main(env_file: str, events: int, out: str) -> None:
    from devstack.demo import s3_client
    from devstack.emulator.xmlutil import to_xml
    from devstack.objectstore import cos_event
    from devstack.samples import _png
    from devstack.stack import read_env_file

    env = read_env_file(env_file)
    for k, v in env.items():
        if k.startswith(("CIFLOW_", "TENCENTCLOUD_")) and not k.startswith("CIFLOW_DEV_"):
            os.environ[k] = v
    os.environ["CIFLOW_RULES"] = json.dumps(RULES)
    import callback
    import submit

    s3 = s3_client(env)
    bucket = env["CIFLOW_DEV_BUCKET"]
    total = events + WARMUP
    keys = [f"bench/run-{os.getpid()}/img-{i:04d}.png" for i in range(total)]
    for i, key in enumerate(keys):
        s3.put_object(Bucket=bucket, Key=key, Body=_png(size=32, seed=i), ContentType="image/png")
    ctx = {"request_id": "bench", "function_name": "bench"}

    def timed(fn, event):
        w, c = time.perf_counter(), time.process_time()
        result = fn(event, ctx)
        return time.process_time() - c, time.perf_counter() - w, result

    submit_cpu, submit_wall = [], []
    for i, key in enumerate(keys):
        event = cos_event(bucket, env["CIFLOW_REGION"], key, 100, {"Content-Type": "image/png"},
                          "cos:ObjectCreated:Put")
        cpu, wall, result = timed(submit.main_handler, event)
        assert result["results"][0]["status"] == "submitted", result
        if i >= WARMUP:
            submit_cpu.append(cpu)
            submit_wall.append(wall)
    admin = env["CIFLOW_DEV_CI_ADMIN"] + "jobs"
    deadline = time.time() + 120
    while True:
        jobs = [j for j in _json(admin).values() if j["detail"]["Input"]["Object"] in set(keys)]
        if len(jobs) == total and all(j["detail"]["State"] == "Success" for j in jobs) or time.time() > deadline:
            break
        time.sleep(0.5)
    callback_cpu, callback_wall = [], []
    for i, job in enumerate(sorted(jobs, key=lambda j: j["detail"]["Input"]["Object"])):
        body = to_xml("Response", {"EventName": "TaskFinish", "JobsDetail": job["detail"]})
        query = job["request"]["CallBack"].split("?", 1)[1]
        event = {"body": body, "headers": {"content-type": "application/xml", "x-scf-remote-addr": "127.0.0.1"},
                 "httpMethod": "POST", "path": "/", "queryString": dict([query.split("=", 1)]),
                 "isBase64Encoded": False}
        cpu, wall, result = timed(callback.main_handler, event)
        assert result["statusCode"] == 200 and json.loads(result["body"])["results"][0]["outcome"] == "CLEAN", result
        if i >= WARMUP:
            callback_cpu.append(cpu)
            callback_wall.append(wall)
    floor = sdk_floor(bucket, keys[WARMUP:], [j["detail"]["JobId"] for j in jobs[:len(keys) - WARMUP]])
    with open(out, "w", encoding="utf-8") as fh:
        json.dump({"submit": {"cpu": submit_cpu, "wall": submit_wall, "floor_cpu": floor["submit"]},
                   "callback": {"cpu": callback_cpu, "wall": callback_wall, "floor_cpu": floor["callback"]}}, fh)


def sdk_floor(bucket: str, keys: list, job_ids: list) -> dict:
    """The same SDK calls each handler makes per event, issued bare through the same cached clients:
    what the two SDKs cost on this machine before any of our code runs."""
    from ciflow.ci import ci_client
    from ciflow.storage import s3_client

    s3, ci = s3_client(), ci_client()
    tags = {"TagSet": [{"Key": "ci-status", "Value": "PENDING"}]}
    job = {"Tag": "ImageInspect", "Input": {"Object": keys[0]}, "Operation": {"UserData": "floor", "JobLevel": "0"},
           "CallBack": "no"}
    sub, cb = [], []
    for i, key in enumerate(keys):
        c = time.process_time()
        s3.head_object(Bucket=bucket, Key=key)
        s3.put_object(Bucket=bucket, Key=f".ciflow/floor/{i}.json", Body=b"{}", IfNoneMatch="*")
        s3.put_object(Bucket=bucket, Key=f".ciflow/floor/p{i}.json", Body=b"{}")
        s3.get_object_tagging(Bucket=bucket, Key=key)
        s3.put_object_tagging(Bucket=bucket, Key=key, Tagging=tags)
        ci.ci_create_media_jobs(Bucket=bucket, Jobs=job, Lst={}, ContentType="application/xml")
        s3.put_object(Bucket=bucket, Key=f".ciflow/floor/{i}.json", Body=b"{}")
        sub.append(time.process_time() - c)
    for i, (key, job_id) in enumerate(zip(keys, job_ids)):
        c = time.process_time()
        ci.ci_get_media_jobs(Bucket=bucket, JobIDs=job_id)
        s3.get_object(Bucket=bucket, Key=f".ciflow/floor/{i}.json")["Body"].read()
        s3.head_object(Bucket=bucket, Key=key)
        s3.get_object_tagging(Bucket=bucket, Key=key)
        s3.put_object_tagging(Bucket=bucket, Key=key, Tagging=tags)
        s3.put_object(Bucket=bucket, Key=f".ciflow/floor/r{i}.json", Body=b"{}")
        s3.delete_object(Bucket=bucket, Key=f".ciflow/floor/p{i}.json")
        cb.append(time.process_time() - c)
    return {"submit": sub, "callback": cb}


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
