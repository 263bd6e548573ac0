"""One cold start, in a fresh process of SCF's interpreter: `python bench/cold.py <variant> <function>`.

Run by `coldstart.py` with CPython 3.9 from the `make package` artefacts unpacked as SCF unpacks them
(`PYTHONPATH=<root>/var/user:<root>/opt`, `PYTHONDONTWRITEBYTECODE=1`, `-S`), so only the bytecode the
artefacts ship is used and nothing of this machine's site-packages is.

Prints the wall and CPU milliseconds from the first statement of this script to the moment everything
the first invocation needs is built (modules imported, settings and rules parsed, clients constructed),
without any network call; interpreter start-up before that is the same for every variant.

Variants:
- ours:  the handler file `functions/<f>.py` loaded as the runtime loads it, then the settings, rules
         and cached clients its first invocation uses.
- floor: the SDK-import floor: boto3 and qcloud_cos imported and a client of each built.
- naive: `naive_<f>.py` (bench/naive/, copied into the code directory): a plain SDK handler.
- none:  nothing: the interpreter's own start-up, which instruction counts subtract.

Python 3.9 syntax only: this runs on the runtime's interpreter.
"""

import time

T0 = time.perf_counter()
C0 = time.process_time()

import importlib.util  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

ENV = {
    "CIFLOW_REGION": "ap-guangzhou", "CIFLOW_CALLBACK_SECRET": "bench-secret-0123456789",
    "CIFLOW_CALLBACK_URL": "https://1250000000-abc.ap-guangzhou.tencentscf.com/", "CIFLOW_BUCKETS": "b-1250000000",
    "TENCENTCLOUD_SECRETID": "AKIDbench", "TENCENTCLOUD_SECRETKEY": "bench", "TENCENTCLOUD_SESSIONTOKEN": "tok",
}


def code_root() -> str:
    return os.environ["PYTHONPATH"].split(os.pathsep)[0]


def ours(function: str) -> None:
    path = os.path.join(code_root(), "functions", function + ".py")
    spec = importlib.util.spec_from_file_location("index_" + function, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from ciflow.ci import ci_client
    from ciflow.rules import get_rules
    from ciflow.settings import get_settings
    from ciflow.storage import s3_client

    get_settings()
    get_rules()
    s3_client()
    ci_client()


def floor(function: str) -> None:
    import boto3
    from botocore.config import Config
    from qcloud_cos import CosConfig, CosS3Client

    boto3.session.Session().client("s3", region_name="ap-guangzhou", endpoint_url="https://cos.ap-guangzhou.myqcloud.com",
                                   aws_access_key_id="a", aws_secret_access_key="b", aws_session_token="t",
                                   config=Config(signature_version="s3v4"))
    CosS3Client(CosConfig(Region="ap-guangzhou", SecretId="a", SecretKey="b", Token="t"))


def naive(function: str) -> None:
    __import__("naive_" + ("callback" if function == "callback" else "submit"))


if __name__ == "__main__":
    variant, function = sys.argv[1], sys.argv[2]
    os.environ.update(ENV)
    {"ours": ours, "floor": floor, "naive": naive, "none": lambda f: None}[variant](function)
    print(f"{(time.perf_counter() - T0) * 1000:.2f} {(time.process_time() - C0) * 1000:.2f}")
