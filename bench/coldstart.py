"""Cold start of the packaged functions on CPython 3.9, as SCF runs them, against the SDK-import floor.

The `make package` artefacts (dist/*.zip) are unpacked as SCF unpacks them (`var/user` and `opt` in a
temporary folder, `deploy.scf_runtime.lay_out`), and each variant of `cold.py` runs in fresh 3.9
processes with `-S`, `PYTHONPATH=var/user:opt` and `PYTHONDONTWRITEBYTECODE=1`: only the bytecode the
layers ship is used, as on SCF, whose code and layer directories are read-only.

Figures per (function, variant): instructions counted by callgrind when valgrind is installed (the
same on every run to about 0.1%, so the ratios do not depend on what else this machine is doing),
less those of the interpreter's start-up (`cold.py none`), as the times below exclude it; and medians
of CPU and wall milliseconds from the script's first statement over `runs` processes, variants
interleaved. `ours-source` is the same layout with every `__pycache__`
removed: what the functions cost before the layers shipped bytecode.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FUNCTIONS = ("submit", "callback", "reconcile")


def layout(dist: Path, dest: Path, bytecode: bool) -> Path:
    from deploy.scf_runtime import lay_out

    root = lay_out(dest, dist / "function-code.zip", [dist / "layer-ciflow.zip", dist / "layer-deps.zip"])
    for f in ("naive_common.py", "naive_submit.py", "naive_callback.py"):
        shutil.copyfile(ROOT / "bench" / "naive" / f, root / "var" / "user" / f)
    (root / "bench").mkdir(exist_ok=True)
    shutil.copyfile(ROOT / "bench" / "cold.py", root / "bench" / "cold.py")
    if not bytecode:
        for cache in sorted(root.rglob("__pycache__"), reverse=True):
            shutil.rmtree(cache)
    return root


def _env(root: Path) -> dict[str, str]:
    from devstack.runner import scf_environment

    env = scf_environment(root)
    env["PYTHONHASHSEED"] = "0"
    return env


def one(py39: str, root: Path, variant: str, function: str) -> tuple[float, float]:
    out = subprocess.run([py39, "-S", str(root / "bench" / "cold.py"), variant, function], cwd=root / "var" / "user",
                         env=_env(root), capture_output=True, text=True, check=False, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"cold start {variant} {function} failed:\n{out.stderr[-3000:]}")
    wall, cpu = out.stdout.split()
    return float(wall), float(cpu)


def instructions(py39: str, root: Path, variant: str, function: str) -> int:
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", py39, "-S",
                          str(root / "bench" / "cold.py"), variant, function], cwd=root / "var" / "user",
                         env=_env(root), capture_output=True, text=True, check=True, timeout=900).stderr
    for line in out.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1].strip())
    raise RuntimeError("callgrind reported no instruction count")


def imports_from_layout(py39: str, root: Path) -> dict[str, Any]:
    """Where ciflow and boto3 came from, and whether their modules were loaded from shipped bytecode."""
    script = ("import json, sys, boto3, ciflow.storage as s\n"
              "print(json.dumps({'python': sys.version.split()[0], 'ciflow': s.__file__, 'boto3': boto3.__file__,"
              " 'cached': [s.__cached__, boto3.__cached__], 'dont_write': sys.dont_write_bytecode}))")
    out = subprocess.run([py39, "-S", "-c", script], cwd=root / "var" / "user", env=_env(root), capture_output=True,
                         text=True, check=True, timeout=120)
    import json

    return json.loads(out.stdout)


def measure(runs: int, use_callgrind: Optional[bool] = None, dist: Path = ROOT / "dist") -> dict[str, Any]:
    from deploy.scf_runtime import python39

    py39 = python39()
    if py39 is None:
        return {"skipped": "no CPython 3.9 here (pyenv 3.9.18 or python3.9 on PATH): the packaged cold start "
                           "is measured on SCF's interpreter or not at all"}
    if use_callgrind is None:
        use_callgrind = shutil.which("valgrind") is not None
    with tempfile.TemporaryDirectory(prefix="ciflow-cold-") as tmp:
        roots = {"compiled": layout(dist, Path(tmp) / "compiled", True),
                 "source": layout(dist, Path(tmp) / "source", False)}
        where = imports_from_layout(py39, roots["compiled"])
        plan = [("floor", "floor", "compiled", "submit"), ("floor-source", "floor", "source", "submit")]
        for f in FUNCTIONS:
            plan.append(("ours", "ours", "compiled", f))
            plan.append(("ours-source", "ours", "source", f))
            if f != "reconcile":
                plan.append(("naive", "naive", "compiled", f))
        for _label, variant, layout_name, f in plan:  # warm the page cache once
            one(py39, roots[layout_name], variant, f)
        samples: dict[tuple[str, str], dict[str, list[float]]] = {}
        for _ in range(runs):
            for label, variant, layout_name, f in plan:
                wall, cpu = one(py39, roots[layout_name], variant, f)
                s = samples.setdefault((label, f), {"wall": [], "cpu": []})
                s["wall"].append(wall)
                s["cpu"].append(cpu)
        result: dict[str, Any] = {"python": where["python"], "runs": runs, "callgrind": use_callgrind, "from": where,
                                  "variants": {}}
        startup = instructions(py39, roots["compiled"], "none", "submit") if use_callgrind else 0
        if use_callgrind:
            result["startup_minstr"] = round(startup / 1e6, 1)
        for (label, f), s in samples.items():
            entry = {"wall_ms": round(statistics.median(s["wall"]), 1), "cpu_ms": round(statistics.median(s["cpu"]), 1)}
            if use_callgrind and label in ("ours", "floor"):  # the budget's figures; the rest by CPU time
                variant, layout_name = next((v, ln) for lb, v, ln, ff in plan if lb == label and ff == f)
                entry["minstr"] = round((instructions(py39, roots[layout_name], variant, f) - startup) / 1e6, 1)
            result["variants"][f"{label}:{f}"] = entry
    v = result["variants"]
    floor, floor_source = v["floor:submit"], v["floor-source:submit"]
    metric = "minstr" if use_callgrind else "cpu_ms"
    result["metric"] = metric
    result["ratios"] = {}
    for f in FUNCTIONS:
        r = {"ours": round(v[f"ours:{f}"][metric] / floor[metric], 3),
             "ours_cpu": round(v[f"ours:{f}"]["cpu_ms"] / floor["cpu_ms"], 3),
             # before the layers shipped bytecode: both sides compile what they import
             "source_ours_cpu": round(v[f"ours-source:{f}"]["cpu_ms"] / floor_source["cpu_ms"], 3),
             "bytecode_saves_cpu_ms": round(v[f"ours-source:{f}"]["cpu_ms"] - v[f"ours:{f}"]["cpu_ms"], 1),
             "bytecode_saves_wall_ms": round(v[f"ours-source:{f}"]["wall_ms"] - v[f"ours:{f}"]["wall_ms"], 1)}
        if f"naive:{f}" in v:
            r["naive_cpu"] = round(v[f"naive:{f}"]["cpu_ms"] / floor["cpu_ms"], 3)
        result["ratios"][f] = r
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(measure(int(os.environ.get("RUNS", "3")), use_callgrind="--callgrind" in sys.argv), indent=1))
