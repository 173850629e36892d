"""A Celery worker (with beat) as a subprocess of the test, against the test database: background
responses, sweeps and leases run in it as they do in production."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from testsupport.live_server import database_url_for_tests
from testsupport.paths import REPO_ROOT
from testsupport.waiting import wait_until


class Worker:
    """``celery -A config worker -B`` (worker and beat in one process group) as a subprocess of
    the test, against the test database. ``env`` overrides settings for this process only, like
    :class:`testsupport.live_server.DaphneProcess` (an empty value unsets a setting:
    ``{"DATABASE_URL": ""}`` is the embedded default's SQLite in ``PLATFORM_DATA_DIR``)."""

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.env = env or {}
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    def start(self) -> Worker:
        env = {
            **os.environ,
            "DATABASE_URL": database_url_for_tests(),
            "PYTHONUNBUFFERED": "1",
            "PLATFORM_DATA_DIR": str(self.log_dir),
            **self.env,
        }
        self.log_path = self.log_dir / f"worker-{time.monotonic_ns()}.log"
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "worker",
                    "-B",
                    "-l",
                    "info",
                    "--concurrency",
                    "2",
                    "--without-mingle",
                    "--without-gossip",
                    "-s",
                    str(self.log_dir / f"beat-{time.monotonic_ns()}"),
                ],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill -9 reaches the pool children
            )
        try:
            wait_until(self._ready, within=40, every=0.2, what="the worker says ready.")
        except AssertionError:
            self.stop()
            raise RuntimeError(f"worker did not become ready:\n{self.log()}") from None
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"worker exited early:\n{self.log()}")
        return "ready." in self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if not self.running:
            return
        assert self.process is not None  # running
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
