"""A real daphne process serving ``config.asgi`` against the test database, for tests that go
through sockets (the official SDK, disconnects, kills)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx

from testsupport.paths import REPO_ROOT
from testsupport.ports import free_port
from testsupport.waiting import wait_until


def database_url_for_tests() -> str:
    """``DATABASE_URL`` of the database pytest-django created, for processes the test starts."""
    from django.conf import settings

    db: dict[str, Any] = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    host = db["HOST"] or "127.0.0.1"
    port = db["PORT"] or "5432"
    return f"postgres://{auth}@{host}:{port}/{db['NAME']}"


class DaphneProcess:
    """A real daphne process serving config.asgi against the test database; ``env`` overrides
    settings for this process only. Tests that use it must commit their data
    (``transactional_db`` / ``transactional_cast``): the server has its own connections."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = env or {}
        self.process: subprocess.Popen | None = None
        self.log_path = REPO_ROOT / ".data" / f"test-daphne-{self.port}.log"

    def start(self) -> DaphneProcess:
        env = {
            **os.environ,
            "DATABASE_URL": database_url_for_tests(),
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "WARNING",
            **self.env,
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "daphne",
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "config.asgi:application",
                ],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(self._ready, within=30, every=0.2, what=f"daphne; see {self.log_path}")
        except AssertionError:
            self.process.kill()
            raise RuntimeError(f"daphne did not become ready; see {self.log_path}") from None
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"daphne exited early:\n{self.log_path.read_text()}")
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL: no finally, no shutdown hook — a process lost mid-response."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
