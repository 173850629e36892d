"""The real CPU vLLM, started once per test session for the tests marked ``integration``.

It is started exactly as ``manage.py runengine`` starts it (same profile, same prepared model,
same flags), on a free port, with its output in ``DATA_DIR/logs/``. Without the engine venv the
tier is skipped, unless ``REQUIRE_ENGINE`` is set (CI sets it): then that is a failure.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from engines.embedded import launch
from engines.embedded.server import EngineServer, EngineStartError, free_port

READY_TIMEOUT_SECONDS = 240
_METRIC_LINE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
_cold_starts: list[str] = []


def _required() -> bool:
    return os.environ.get("REQUIRE_ENGINE", "").strip().lower() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class RealEngine:
    server: EngineServer
    served_model_name: str
    cold_start_seconds: float
    log_path: Path

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` in vLLM's Prometheus ``/metrics`` matching ``labels``."""
        text = httpx.get(f"{self.server.root_url}/metrics", timeout=5).text
        total, seen = 0.0, False
        for line in text.splitlines():
            match = _METRIC_LINE.match(line)
            if match is None or match["name"] != name:
                continue
            sample_labels = dict(_LABEL.findall(match["labels"] or ""))
            if all(sample_labels.get(k) == v for k, v in labels.items()):
                total += float(match["value"])
                seen = True
        if not seen:
            raise AssertionError(f"vLLM exposes no {name} sample with {labels}")
        return total


@pytest.fixture(scope="session")
def real_engine() -> Iterator[RealEngine]:
    python = launch.engine_python()
    if not python.exists():
        reason = f"no engine venv ({python}); create it with scripts/engine-venv.sh"
        if _required():
            pytest.fail(f"{reason}. REQUIRE_ENGINE is set, so the real engine is mandatory.")
        pytest.skip(reason)

    profile = launch.load_profile()
    launch.prepare_model(profile.model)
    port = free_port()
    log_dir = Path(settings.DATA_DIR) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"integration-engine-{port}.log"
    with log_path.open("wb") as log:
        server = launch.build_server(profile, host="127.0.0.1", port=port, output=log)
        server.start()
        try:
            seconds = server.wait_ready(READY_TIMEOUT_SECONDS)
        except EngineStartError as exc:
            server.stop()
            tail = log_path.read_text(errors="replace")[-4000:]
            pytest.fail(f"the real vLLM did not start: {exc}\n--- {log_path} (tail) ---\n{tail}")
        _cold_starts.append(
            f"real vLLM ({profile.device}, {profile.package}): cold start {seconds:.1f} s "
            f"to /health ready; log {log_path}"
        )
        try:
            yield RealEngine(server, profile.served_model_name, seconds, log_path)
        finally:
            started = time.monotonic()
            code = server.stop(timeout=30)
            _cold_starts.append(
                f"real vLLM stopped in {time.monotonic() - started:.1f} s (status {code})"
            )


def pytest_terminal_summary(terminalreporter) -> None:
    for line in _cold_starts:
        terminalreporter.write_line(line)
