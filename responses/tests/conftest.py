from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async

from conftest import REPO_ROOT, _database_url_for_tests
from engines.runtime.registry import engine_override
from engines.runtime.scripted import ScriptedEngine, build_script


@pytest.fixture
def scripted_model(transactional_db):
    from engines.models import ServedModel

    return ServedModel.objects.create(
        name="scripted", upstream_model="scripted", context_length=4096, tool_call_parser="hermes"
    )


@pytest.fixture
def engine(scripted_model):
    engine = ScriptedEngine(build_script(text="Hello there, friend."))
    with engine_override(scripted_model.name, engine):
        yield engine


def parse_sse(raw: bytes) -> list[dict]:
    """Events of an SSE body; asserts the framing rules (event == type, no data-less frames)."""
    events = []
    for frame in raw.decode().split("\n\n"):
        lines = [line for line in frame.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        assert "data" in fields, frame
        if fields["data"] == "[DONE]":
            continue
        event = json.loads(fields["data"])
        assert fields.get("event") == event["type"], frame
        events.append(event)
    return events


async def wait_for_status(response_id: str, statuses: set[str], *, within: float):
    """The stored response once its status is one of ``statuses`` (polls the database)."""
    from responses.models import StoredResponse

    deadline = time.monotonic() + within
    while True:
        row = await sync_to_async(StoredResponse.objects.get)(public_id=response_id)
        if row.status in statuses:
            return row
        assert time.monotonic() < deadline, f"{response_id} still {row.status}"
        await asyncio.sleep(0.05)


def text_of(events: list[dict]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


class Worker:
    """``celery -A config worker -B`` (worker and beat in one process group) as a subprocess of
    the test, against the test database. ``env`` overrides settings for this process only, like
    :class:`conftest.DaphneProcess` (an empty value unsets a setting: ``{"DATABASE_URL": ""}``
    is the embedded default's SQLite in ``PLATFORM_DATA_DIR``)."""

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.env = env or {}
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    def start(self) -> Worker:
        env = {
            **os.environ,
            "DATABASE_URL": _database_url_for_tests(),
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
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log()}")
            if "ready." in self.log():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"worker did not become ready:\n{self.log()}")

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
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def reasoning_keys(settings):
    """Two Fernet keys, newest first (H4); tests that rotate change the list themselves."""
    from cryptography.fernet import Fernet

    keys = [Fernet.generate_key().decode(), Fernet.generate_key().decode()]
    settings.REASONING_ENCRYPTION_KEYS = keys
    return keys
