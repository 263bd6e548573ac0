"""One cold start, measured in a fresh process: `python bench/cold.py <variant> <function>`.

Prints the milliseconds from the first statement of this process to the moment everything the
first invocation needs is built (modules imported, settings and rules parsed, clients constructed),
without any network call. Interpreter start-up before that is the same for every variant.

Variants:
- ours:  the real handler module (functions/<f>.py with the ciflow layer on the path, as SCF lays
         them out), then the settings, rules and cached clients its first invocation uses.
- floor: only the SDKs that function uses, and their clients.
- naive: bench/naive/<f>.py, written the common way (eager powertools parser, event_handler and
         idempotency imports; new clients on every invocation), plus the clients its first call builds.
"""

import time

T0 = time.perf_counter()

import os  # noqa: E402
import sys  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {
    "CIFLOW_REGION": "ap-guangzhou", "CIFLOW_CALLBACK_SECRET": "bench-secret-0123456789",
    "CIFLOW_CALLBACK_URL": "https://1250000000-abc.ap-guangzhou.tencentscf.com/", "CIFLOW_BUCKETS": "b-1250000000",
    "TENCENTCLOUD_SECRETID": "AKIDbench", "TENCENTCLOUD_SECRETKEY": "bench", "TENCENTCLOUD_SESSIONTOKEN": "tok",
}


def ours(function: str) -> None:
    sys.path[:0] = [os.path.join(ROOT, "functions"), os.path.join(ROOT, "layers", "ciflow")]
    __import__(function)
    from ciflow.ci import ci_client
    from ciflow.rules import get_rules
    from ciflow.settings import get_settings
    from ciflow.storage import s3_client

    get_settings()
    get_rules()
    s3_client()
    ci_client()
    if function == "callback":
        import defusedxml.ElementTree  # noqa: F401 - the first callback parses XML


def floor(function: str) -> None:
    import boto3
    from botocore.config import Config
    from qcloud_cos import CosConfig, CosS3Client

    boto3.session.Session().client("s3", region_name="ap-guangzhou", endpoint_url="https://cos.ap-guangzhou.myqcloud.com",
                                   aws_access_key_id="a", aws_secret_access_key="b", aws_session_token="t",
                                   config=Config(signature_version="s3v4"))
    CosS3Client(CosConfig(Region="ap-guangzhou", SecretId="a", SecretKey="b", Token="t"))
    if function == "callback":
        import defusedxml.ElementTree  # noqa: F401


def naive(function: str) -> None:
    sys.path.insert(0, os.path.join(ROOT, "bench", "naive"))
    module = __import__(f"naive_{function}")
    module.clients()


if __name__ == "__main__":
    variant, function = sys.argv[1], sys.argv[2]
    os.environ.update(ENV)
    {"ours": ours, "floor": floor, "naive": naive}[variant](function)
    # wall ms since the first statement, and CPU ms of the whole process (start-up included)
    print(f"{(time.perf_counter() - T0) * 1000:.2f} {time.process_time() * 1000:.2f}")
