"""Run the local stack in a child process (for tests and the demo) and always stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from .stack import read_env_file

ROOT = Path(__file__).resolve().parent.parent


class StackProcess:
    """`with StackProcess(args) as env:` starts `python -m devstack serve` and yields its env."""

    def __init__(self, args: Optional[list[str]] = None, log_path: Optional[str] = None, timeout: float = 30):
        self.args = args or []
        self.timeout = timeout
        self.dir = tempfile.mkdtemp(prefix="ciflow-devstack-")
        self.env_file = os.path.join(self.dir, "devstack.env")
        self.log_path = log_path or os.path.join(self.dir, "devstack.log")
        self.proc: Optional[subprocess.Popen] = None
        self.env: dict[str, str] = {}

    def start(self) -> dict[str, str]:
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devstack", "serve", "--env-file", self.env_file, "--quiet", *self.args],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        deadline = time.time() + self.timeout
        while not os.path.exists(self.env_file):
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(f"local stack did not start; see {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.05)
        self.env = read_env_file(self.env_file)
        return self.env

    def log_tail(self, n: int = 40) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return "".join(fh.readlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def __enter__(self) -> dict[str, str]:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
