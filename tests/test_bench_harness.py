"""L2: streaming performance is measured by the benchmark harness (bench/streams.py, results in
docs/performance.md). Timings are never asserted in tests; this checks that the harness itself
runs end to end on a tiny configuration and reports both paths without errors, so the numbers
it publishes come from a working tool."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _bench_database_url() -> str:
    """A database of its own next to the tests' (the harness drops and creates it)."""
    url = urlsplit(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    name = url.path.lstrip("/") or "postgres"
    return urlunsplit(url._replace(path=f"/{name}_bench_smoke"))


@pytest.mark.compliance("L2")
def test_the_streaming_benchmark_runs_and_reports_both_paths():
    command = [
        sys.executable, "-m", "bench.streams", "--quick", "--skip-memory",
        "--upstreams", "fast", "--tokens", "16",
        "--database-url", _bench_database_url(),
        "--redis-url", os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
    ]  # fmt: skip
    # A loaded CI machine can be slow to hand out database connections: this checks that the
    # harness works, not how fast, so its processes may wait longer than the default 10 s.
    env = {**os.environ, "DATABASE_POOL_TIMEOUT": "60"}
    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240, env=env
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = re.findall(
        r"^\s+fast\s+(direct|platform)\s+c=(\d+)\s+n=(\d+)\s+err=(\d+)", done.stdout, re.M
    )
    assert {(path, c) for path, c, _, _ in lines} == {
        ("direct", "1"),
        ("platform", "1"),
        ("direct", "8"),
        ("platform", "8"),
    }
    assert all(int(n) > 0 and err == "0" for _, _, n, err in lines), lines
    assert "| 1 | **added / ratio** |" in done.stdout


def test_the_request_cost_tool_runs_and_counts_what_a_request_does():
    """bench/request_cost.py: the per-request figures of docs/performance.md come from it."""
    url = urlsplit(_bench_database_url())
    database = urlunsplit(url._replace(path=url.path + "_cost"))
    command = [
        sys.executable, "-m", "bench.request_cost", "--requests", "5", "--warm-up", "2",
        "--tokens", "4", "--database-url", database,
        "--redis-url", os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"^CPU per request: [\d.]+ ms \(event loop thread", done.stdout, re.M)
    assert re.search(
        r"^\s+1\.00\s+SQL\s+INSERT INTO \"responses_storedresponse\"", done.stdout, re.M
    )
