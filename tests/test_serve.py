"""``manage.py serve``, the web tier as ``platform/Procfile`` and production run it: several
processes on one port, with uvicorn (the default) and with daphne. The official SDK streams
through it end to end (fake vLLM at the engine seam), and SIGTERM stops every process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys

import httpx
import openai
import pytest

from engines.models import EngineReplica, ServedModel
from testsupport.live_server import database_url_for_tests
from testsupport.paths import REPO_ROOT
from testsupport.ports import free_port
from testsupport.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as handle:
                if int(handle.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
    return found


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as handle:
        return handle.read().replace(b"\0", b" ").decode()
    return ""


def _web_processes(pid: int) -> list[int]:
    """The processes that serve requests: uvicorn's workers or the daphne processes (not
    multiprocessing's resource tracker)."""
    return [
        child
        for child in _children(pid)
        if "spawn_main" in _cmdline(child) or "daphne" in _cmdline(child)
    ]


@contextlib.contextmanager
def serving(server: str, processes: int):
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_tests(),
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "WARNING",
        "WEB_SERVER": server,
        "WEB_PROCESSES": str(processes),
        "PORT": str(port),
    }
    log_path = REPO_ROOT / ".data" / f"test-serve-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        # Exactly the Procfile's web line: settings from the environment only.
        process = subprocess.Popen(
            [sys.executable, "-u", "manage.py", "serve"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        base_url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert process.poll() is None, log_path.read_text()
            with contextlib.suppress(httpx.HTTPError):
                return (
                    httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200
                    and len(_web_processes(process.pid)) == processes
                )
            return False

        wait_until(ready, within=60, every=0.2, what="serve answers with every process")
        yield base_url, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


async def _stream_all(base_url: str, secret: str, model: str, count: int) -> list[str]:
    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=secret, max_retries=0)

    async def one() -> str:
        stream = await client.responses.create(model=model, input="Say hi", stream=True)
        last = None
        async for event in stream:
            last = event
        return last.type

    try:
        return await asyncio.gather(*(one() for _ in range(count)))
    finally:
        await client.close()


@pytest.mark.parametrize("server", ["uvicorn", "daphne"])
def test_two_processes_on_one_port_serve_sdk_streams_and_stop_together(
    server, transactional_cast, fake_vllm
):
    model = ServedModel.objects.create(name=f"serve-{server}-{fake_vllm.port}", upstream_model="m")
    EngineReplica.objects.create(model=model, base_url=fake_vllm.base_url)

    with serving(server, 2) as (base_url, process):
        workers = _web_processes(process.pid)
        assert len(workers) == 2
        endings = asyncio.run(
            _stream_all(base_url, transactional_cast.alice.secret, model.name, 12)
        )
        assert endings == ["response.completed"] * 12

        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        for worker in workers:  # none left behind
            assert not os.path.exists(f"/proc/{worker}") or "zombie" in _status(worker)


def _status(pid: int) -> str:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as handle:
        return handle.read().lower()
    return "zombie"


def test_the_embedded_default_keeps_one_process(settings):
    """Without Redis the cache (cancel flags) and the rate limiter live in the process."""
    from api.management.commands.serve import default_processes

    settings.REDIS_URL = None
    assert default_processes() == 1
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    assert default_processes() == len(os.sched_getaffinity(0))
