"""The embedded default as ``make run`` starts it, for tests: no ``DATABASE_URL``, no
``REDIS_URL`` (SQLite, Celery over the embedded broker, a per-process cache), every process a
subprocess sharing one ``PLATFORM_DATA_DIR``, engines faked at the engine seam."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from testsupport.paths import REPO_ROOT
from testsupport.ports import free_port
from testsupport.waiting import wait_until


def embedded_env(data_dir: Path, models: list[dict], **overrides: str) -> dict[str, str]:
    """Overrides that turn the test environment into the embedded default (an empty value is
    an unset setting)."""
    return {
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "QUOTA_REDIS_URL": "",
        "SECRET_KEY": "",  # generated once into the data directory, shared by every process
        "API_KEY_PEPPER": "",
        "ALLOWED_HOSTS": "localhost,127.0.0.1,[::1]",  # the default (empty would mean none)
        "SECURE_SSL_REDIRECT": "",
        "PLATFORM_DATA_DIR": str(data_dir),
        "ENGINE_MODELS": json.dumps(models),
        "LOG_LEVEL": "WARNING",
        **overrides,
    }


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def bootstrap(env: dict[str, str]) -> str:
    """Migrate the embedded database and return the demo API key ``bootstrap`` prints."""
    manage(env, "migrate", "--noinput")
    found = re.search(r"sk-rp-[A-Za-z0-9]+", manage(env, "bootstrap"))
    assert found, "bootstrap printed no API key"
    return found.group(0)


class SupervisedPlatform:
    """``scripts/supervise.py`` (what ``make run`` runs) over a Procfile of web, worker and beat
    written for the test; its output is collected line by line."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.env = env
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self.process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def procfile(self) -> Path:
        python = sys.executable
        path = self.data_dir / "Procfile"
        path.write_text(
            f"web: {python} -u -m daphne -b 127.0.0.1 -p {self.port} config.asgi:application\n"
            f"worker: {python} -u -m celery -A config worker -l info --concurrency 2"
            " --without-mingle --without-gossip\n"
            f"beat: {python} -u -m celery -A config beat -l info"
            f" -s {self.data_dir / 'celerybeat-schedule'}\n"
        )
        return path

    def start(self) -> SupervisedPlatform:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-u",
                "scripts/supervise.py",
                "-f",
                str(self.procfile()),
                "--grace",
                "5",
            ],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()
        wait_until(self.healthy, within=60, every=0.2, what="the web process answers /healthz")
        self.wait_for_line(r"worker\s+\| .*ready\.", within=60)
        return self

    def _collect(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        with (self.data_dir / "supervise.log").open("a") as log:  # kept for a failed test
            for line in self.process.stdout:
                self.lines.append(line.rstrip("\n"))
                log.write(line)
                log.flush()

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def output(self) -> str:
        return "\n".join(self.lines)

    def matching(self, pattern: str) -> list[str]:
        return [line for line in list(self.lines) if re.search(pattern, line)]

    def wait_for_line(self, pattern: str, *, within: float) -> str:
        return wait_until(
            lambda: next(iter(self.matching(pattern)), None), within=within, what=pattern
        )

    def pid_of(self, name: str) -> int:
        started = self.matching(rf"supervise\s+\| started {name} \(pid (\d+)\)")
        assert started, f"{name} was never started:\n{self.output()}"
        pid = re.search(r"pid (\d+)", started[-1])
        assert pid  # `started` matched this pattern
        return int(pid.group(1))

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()
