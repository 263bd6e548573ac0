"""The packaged artifacts, laid out as SCF lays them out, on CPython 3.9: they import, pass the 3.9
checks, and run the whole pipeline against the local stack (COS trigger, CI emulator, Function URL).

`make package` is run here through `deploy.package.build`; the dependencies layer is cached under
dist/.cache/ by a hash of its inputs, so only the first run after a change downloads wheels.
"""

from __future__ import annotations

import json
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy import package
from deploy.scf_runtime import lay_out, python39
from devstack.runner import scf_environment
from devstack.samples import _png, zip_archive
from tests.conftest import Dev, start_dev

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_SOURCES = sorted([*(ROOT / "functions").rglob("*.py"), *(ROOT / "layers").rglob("*.py")])


@pytest.fixture(scope="module")
def artifacts() -> dict[str, package.Artifact]:
    return package.build(log=lambda _: None)


@pytest.fixture(scope="module")
def py39() -> str:
    found = python39()
    if found is None:
        pytest.skip("no CPython 3.9 here (pyenv 3.9.18 or python3.9 on PATH): the runtime checks need one")
    return found


@pytest.fixture(scope="module")
def scf_root(artifacts: dict[str, package.Artifact], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/var/user and /opt, as SCF unpacks the code and the two layers."""
    return lay_out(tmp_path_factory.mktemp("scf"), artifacts["function-code"].path,
                   [artifacts["layer-ciflow"].path, artifacts["layer-deps"].path])


def run39(py39: str, root: Path, script: str) -> dict:
    proc = subprocess.run([py39, "-S", "-c", script], cwd=root / "var" / "user", env=scf_environment(root),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_three_artifacts_fit_scf(artifacts: dict[str, package.Artifact]) -> None:
    assert set(artifacts) == {"function-code", "layer-ciflow", "layer-deps"}
    assert artifacts["layer-deps"].size <= 20 * 1024 * 1024
    total = sum(a.unzipped for a in artifacts.values())
    assert total < 500 * 1024 * 1024  # code plus layers, unzipped
    names = {key: zipfile.ZipFile(a.path).namelist() for key, a in artifacts.items()}
    # Code at functions/<name>.py (the handlers' paths), library and dependencies at the layer roots
    assert names["function-code"] == sorted(f"functions/{p.name}" for p in (ROOT / "functions").glob("*.py"))
    assert all(n.startswith("ciflow/") for n in names["layer-ciflow"])
    assert "ciflow/default_rules.json" in names["layer-ciflow"]
    roots = {n.split("/")[0] for n in names["layer-deps"]}
    assert {"boto3", "botocore", "qcloud_cos", "crcmod", "defusedxml", "aws_lambda_powertools"} <= roots
    for entries in names.values():
        for n in entries:
            parts = n.split("/")
            assert "tests" not in parts and not n.endswith(".pyi"), n
            # the only bytecode: CPython 3.9's, where 3.9 looks for it
            assert ("__pycache__" not in parts and not n.endswith(".pyc")) or n.endswith(".cpython-39.pyc"), n
    # both layers carry the 3.9 bytecode of every module they ship (deploy/package.py)
    for layer in ("layer-ciflow", "layer-deps"):
        pyc = {n for n in names[layer] if n.endswith(".pyc")}
        assert {package.pyc_arcname(n) for n in names[layer] if n.endswith(".py")} == pyc, layer
    # crcmod is its pure-Python fallback; compiled modules are for CPython 3.9 (or the stable ABI)
    assert not [n for n in names["layer-deps"] if n.startswith("crcmod/") and not n.endswith((".py", ".pyc"))]
    assert all(package.SO_NAME.search(n) for n in names["layer-deps"] if n.endswith(".so"))
    # botocore carries only the S3 and STS models
    services = {n.split("/")[2] for n in names["layer-deps"] if n.startswith("botocore/data/") and n.count("/") > 2}
    assert services == {"s3", "sts"}


def test_rebuilding_gives_identical_bytes(artifacts: dict[str, package.Artifact], tmp_path: Path) -> None:
    again = package.build(tmp_path, log=lambda _: None)
    for key, art in artifacts.items():
        assert again[key].path.read_bytes() == art.path.read_bytes(), key


def test_runtime_sources_compile_with_python39(py39: str) -> None:
    # compile() checks the 3.9 grammar without writing .pyc files into the tree
    script = "import sys\nfor f in sys.argv[1:]:\n    compile(open(f, encoding='utf-8').read(), f, 'exec')\n"
    proc = subprocess.run([py39, "-S", "-c", script, *map(str, RUNTIME_SOURCES)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_runtime_sources_pass_ruff_for_py39() -> None:
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "ruff"), "check", "--target-version", "py39",
                           "functions", "layers"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_module_and_handler_imports_on_python39_from_the_layout(py39: str, scf_root: Path) -> None:
    # Given the artifacts unpacked into /var/user and /opt, and CPython 3.9 without its own site-packages
    script = r"""
import glob, importlib, importlib.util, json, os, pkgutil, sys
import ciflow
mods = sorted(m.name for m in pkgutil.walk_packages(ciflow.__path__, "ciflow.") if not m.name.endswith(".__main__"))
for m in mods:
    importlib.import_module(m)
handlers = {}
code_root = os.environ["PYTHONPATH"].split(os.pathsep)[0]
for path in sorted(glob.glob(os.path.join(code_root, "functions", "*.py"))):
    name = os.path.basename(path)[:-3]
    spec = importlib.util.spec_from_file_location("h_" + name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    handlers[name] = callable(getattr(mod, "main_handler", None))
import boto3, crcmod, qcloud_cos
from botocore.config import Config
s3 = boto3.session.Session().client("s3", region_name="ap-guangzhou", aws_access_key_id="AKIDx",
                                    aws_secret_access_key="k", endpoint_url="https://cos.ap-guangzhou.myqcloud.com",
                                    config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"}))
url = s3.generate_presigned_url("get_object", Params={"Bucket": "b-1250000000", "Key": "k"})
default = boto3.session.Session().client("s3", region_name="us-east-1", aws_access_key_id="x",
                                         aws_secret_access_key="y").meta.endpoint_url
crcmod_ext = sys.modules["crcmod.crcmod"]._usingExtension
print(json.dumps({"python": sys.version.split()[0], "modules": mods, "handlers": handlers, "ciflow": ciflow.__file__,
                  "boto3": boto3.__file__, "crcmod_ext": crcmod_ext, "qcloud_cos": qcloud_cos.__file__,
                  "url": url, "default": default}))
"""
    # When every ciflow module and every handler is imported, and an S3 client is built
    out = run39(py39, scf_root, script)
    # Then all of it came from the layout, on 3.9
    assert out["python"].startswith("3.9.")
    # Every module of the library, sub-packages' too (__main__ is an entry point, run not imported)
    lib = ROOT / "layers" / "ciflow" / "ciflow"
    expected = sorted(".".join(("ciflow", *p.relative_to(lib).with_suffix("").parts)).removesuffix(".__init__")
                      for p in lib.rglob("*.py") if p.name != "__main__.py" and p != lib / "__init__.py")
    assert out["modules"] == expected
    assert out["handlers"] == {"callback": True, "reconcile": True, "submit": True}
    for key in ("ciflow", "boto3", "qcloud_cos"):
        assert out[key].startswith(str(scf_root / "opt")), (key, out[key])
    assert out["crcmod_ext"] is False
    # And the slimmed botocore still resolves endpoints (custom and from its own rules)
    assert out["url"].startswith("https://b-1250000000.cos.ap-guangzhou.myqcloud.com/k?")
    assert out["default"] == "https://s3.amazonaws.com"


@pytest.fixture(scope="module")
def dev39(py39: str, scf_root: Path) -> Iterator[Dev]:
    """The local stack, with every function run by CPython 3.9 from the packaged artifacts."""
    yield from start_dev("--function-python", py39, "--function-root", str(scf_root))


def test_the_packaged_functions_handle_uploads_on_python39(dev39: Dev, scf_root: Path) -> None:
    # Given a clean PNG and a PNG with a ZIP archive appended, uploaded to the watched prefix
    clean, polyglot = "uploads/deploy39/clean.png", "uploads/deploy39/polyglot.png"
    dev39.put(clean, _png(), ContentType="image/png")
    dev39.put(polyglot, _png() + zip_archive(), ContentType="image/png")
    # When the COS trigger, the CI emulator and the Function URL have run the packaged code
    clean_tags = dev39.wait_status(clean, "CLEAN", timeout=60)
    quarantined = dev39.wait_status(f"quarantine/{polyglot}", "SUSPICIOUS", timeout=60)
    # Then the clean image is tagged in place and the polyglot moved to quarantine
    assert clean_tags["ci-rule"] == "images"
    assert quarantined["ci-suspicious-type"] == "ZIP"
    # the copy is tagged before the original is deleted: the delete may trail the status by a moment
    dev39.wait_for(lambda: not dev39.exists(polyglot), what="original deleted after the move")
    # And it was CPython 3.9 running the artifacts under /var/user and /opt, for submit and callback
    # (the runner records an invocation when it returns, a moment after the function's last write)
    for function in ("submit", "callback"):
        runs = dev39.wait_for(lambda f=function: [i for i in dev39.invocations(f) if i["ok"]],
                              what=f"a successful {function} invocation recorded")
        assert {i["runtime"]["python"][:4] for i in runs} == {"3.9."}
        assert {i["runtime"]["ciflow"] for i in runs} == {str(scf_root / "opt" / "ciflow" / "__init__.py")}
