"""One function instance in another interpreter, for the runner's `--function-python` mode.

Started by `WorkerFunctionHost` with the runtime's Python (e.g. CPython 3.9) and
`PYTHONPATH=<root>/var/user:<root>/opt`, the layout SCF gives a function. It imports
`<root>/var/user/functions/<name>.py`, says which Python and which `ciflow` it runs in one JSON line,
and then answers one JSON line per request on stdin:
`{"event", "context", "context_style", "clock_offset"?}` -> `{"ok": true, "result"}` or
`{"ok": false, "error", "traceback"}`. The function's own output (its logs) goes to stderr, so stdout
carries nothing but answers.

`clock_offset` (seconds) moves the clock the function's own code reads (`time.time()` called from
`ciflow` or the function module) for that invocation, as on a host whose clock is off. The SDKs sign
with the true time: COS and CI accept signatures within a tolerance of their own clock.

It runs as a script, outside the devstack package, so it needs only the standard library and must
stay valid Python 3.9.
"""

import importlib.util
import json
import os
import platform
import sys
import time
import traceback

_clock = {"offset": 0.0}


def _own_code(module):
    """The function's own code: the ciflow package and the function module (loaded as scf_<name>)."""
    return module == "ciflow" or module.startswith(("ciflow.", "scf_"))


class Context:
    """SCF's context object: the fields as attributes."""

    def __init__(self, fields):
        self.__dict__.update(fields)


def _load(code_root, name):
    path = os.path.join(code_root, "functions", name + ".py")
    spec = importlib.util.spec_from_file_location("scf_" + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main_handler


def install_clock():
    """Replace time.time with one that adds the current offset for the function's own callers."""
    real = time.time

    def function_time():
        offset = _clock["offset"]
        if offset and _own_code(sys._getframe(1).f_globals.get("__name__", "")):
            return real() + offset
        return real()

    time.time = function_time


def main():
    code_root, name = sys.argv[1], sys.argv[2]
    # Only the function's layout may be importable, not this script's directory (devstack/).
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    install_clock()  # before the function loads, so every reference to time.time is the offset-aware one
    try:
        handler, init_error = _load(code_root, name), None
    except Exception as exc:  # noqa: BLE001 - SCF reports an init error on every invocation
        handler, init_error = None, (f"init: {type(exc).__name__}: {exc}", traceback.format_exc(limit=8))
    ciflow = sys.modules.get("ciflow")
    answers.write(json.dumps({"python": platform.python_version(), "executable": sys.executable,
                              "ciflow": getattr(ciflow, "__file__", None)}) + "\n")
    answers.flush()
    for line in sys.stdin:
        request = json.loads(line)
        _clock["offset"] = float(request.get("clock_offset") or 0.0)
        fields = request["context"]
        context = fields if request.get("context_style") == "dict" else Context(fields)
        if init_error is not None:
            answer = {"ok": False, "error": init_error[0], "traceback": init_error[1]}
        else:
            try:
                answer = {"ok": True, "result": handler(request["event"], context)}
            except Exception as exc:  # noqa: BLE001 - every function error is reported to the runner
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                          "traceback": traceback.format_exc(limit=8)}
        answers.write(json.dumps(answer, default=str) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
