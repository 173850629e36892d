"""Streaming benchmark: the platform against the upstream it fronts, in one run.

    .venv/bin/python -m bench.streams                 # everything, results into docs/performance.md
    .venv/bin/python -m bench.streams --quick         # a smoke run (small numbers, no doc update)
    .venv/bin/python -m bench.streams --py-spy out.svg   # also profile daphne at 32 streams

What it starts (all on this machine, each in its own process):

* two fake vLLM replicas (``testsupport.fake_vllm``): a *fast* one that streams
  ``--tokens`` tokens per request as fast as it can, and a *hold* one that sends its headers and
  then nothing for an hour (to keep streams open for the memory measurement);
* one daphne serving ``config.asgi`` with the production settings shape (PostgreSQL + Redis) on
  a database of its own (``--database-url``, created afresh; ``--sqlite`` for the embedded
  default instead), an organization, a key and two models pointing at the fakes.

What it measures, at 1, 32 and 256 concurrent streams (closed loop: each client starts its next
request when the previous one ends):

* **direct**: ``POST /v1/chat/completions`` (stream) straight to the fast fake;
* **platform**: ``POST /v1/responses`` (stream) to daphne, which calls the same fake.

For each request the client notes the time to the first SSE event, to the first token
(``chat.completion.chunk`` with content / ``response.output_text.delta``) and to the end; the
table reports p50/p99 of each and what the platform adds (platform percentile − direct
percentile), and tokens per second over the whole phase (ratio platform / direct).

Then memory: daphne's RSS idle, and with 1, 32, 256 and 1,000 streams held open on the hold
model, per open stream = (RSS with N open − idle RSS) / N; plus daphne's threads, file
descriptors and database connections at each point.

The client is deliberately cheap (raw bytes, no JSON parsing) because it shares the machine's
cores with daphne and the fake. Nothing here is imported by the platform or the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import json
import os
import platform as platform_module
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DOC = REPO / "docs" / "performance.md"
BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"

SETUP_SCRIPT = """
import json
from engines.models import EngineReplica, ServedModel
from tenants.services.api_keys import api_key_issue
from tenants.services.organizations import organization_create

org = organization_create(name="Bench", slug="bench")
key = api_key_issue(organization=org, name="bench")
for name, url in json.loads({models!r}).items():
    model = ServedModel.objects.create(name=name, upstream_model=name, context_length=8192)
    EngineReplica.objects.create(model=model, base_url=url)
print("BENCH-SETUP " + json.dumps({{"secret": key.secret}}))
"""


# --- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A child process with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        self._log = self.log_path.open("w")
        self.popen = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def check(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited; see {self.log_path}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()


def wait_http(url: str, process: Process, *, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        process.check()
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{process.name} did not answer {url}; see {process.log_path}")


def proc_status(pid: int) -> dict[str, int]:
    fields: dict[str, str] = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return {
        "rss_kib": int(fields["VmRSS"].split()[0]),
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's workers, the daphne processes of ``serve``)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parents[int(entry)] = int(_stat(int(entry))[1])
    tree, frontier = [pid], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        tree += children
        frontier = children
    return tree


def cpu_seconds(pid: int, *, system_only: bool = False) -> float:
    """User + system CPU of ``pid`` and every process below it (all the web processes); or
    the system (kernel) time alone."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            parts = _stat(member)
            total += int(parts[12]) if system_only else int(parts[11]) + int(parts[12])
    return total / ticks


# --- the database ------------------------------------------------------------------------------


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def recreate_postgres_database(url: str) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def postgres_connections(url: str) -> int | None:
    """The database's connections, or None when the server takes no more (a shared server)."""
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    try:
        conn = psycopg.connect(with_database(url, "postgres"), autocommit=True)
    except psycopg.OperationalError:
        return None
    with conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
        ).fetchone()
    return int(row[0])


# --- the client ---------------------------------------------------------------------------------


@dataclass
class Sample:
    ok: bool
    first_event: float = 0.0
    first_token: float = 0.0
    total: float = 0.0
    tokens: int = 0
    error: str = ""


def _is_direct_token(frame: bytes) -> bool:
    return b'"content":"' in frame and b'"content":""' not in frame


def _is_platform_token(frame: bytes) -> bool:
    return frame.startswith(b"event: response.output_text.delta")


async def one_stream(
    client: httpx.AsyncClient,
    url: str,
    body: dict,
    headers: dict[str, str],
    is_token: Callable[[bytes], bool],
) -> Sample:
    started = time.perf_counter()
    sample = Sample(ok=False)
    first_event = first_token = None
    tokens = 0
    try:
        async with client.stream("POST", url, json=body, headers=headers) as response:
            if response.status_code != 200:
                text = (await response.aread())[:200]
                return Sample(ok=False, error=f"{response.status_code}: {text!r}")
            buffer = b""
            async for chunk in response.aiter_raw():
                buffer += chunk
                while True:
                    end = buffer.find(b"\n\n")
                    if end < 0:
                        break
                    frame, buffer = buffer[:end], buffer[end + 2 :]
                    if not frame or frame.startswith(b":"):
                        continue
                    now = time.perf_counter()
                    if first_event is None:
                        first_event = now - started
                    if is_token(frame):
                        tokens += 1
                        if first_token is None:
                            first_token = now - started
    except httpx.HTTPError as exc:
        # Where it broke tells a refused/reset connection from a stream cut short.
        where = "before the first event" if first_event is None else f"after {tokens} tokens"
        return Sample(ok=False, error=f"{exc!r} {where}")
    sample.ok = first_token is not None
    sample.first_event = first_event or 0.0
    sample.first_token = first_token or 0.0
    sample.total = time.perf_counter() - started
    sample.tokens = tokens
    if not sample.ok:
        sample.error = "no token received"
    return sample


async def closed_loop(
    request: Callable[[], Awaitable[Sample]], *, concurrency: int, total: int
) -> tuple[list[Sample], float]:
    remaining = [total]
    samples: list[Sample] = []

    async def worker() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            samples.append(await request())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Phase:
    name: str
    concurrency: int
    samples: list[Sample]
    wall: float
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def good(self) -> list[Sample]:
        return [s for s in self.samples if s.ok]

    @property
    def errors(self) -> int:
        return len(self.samples) - len(self.good)

    def p(self, metric: str, q: float) -> float:
        return percentile([getattr(s, metric) for s in self.good], q) * 1000

    @property
    def tokens_per_second(self) -> float:
        return sum(s.tokens for s in self.good) / self.wall

    @property
    def cpu_per_response(self) -> float:
        """Seconds of CPU of all the web processes together per completed response."""
        return self.cpu.get("web", 0.0) / max(1, len(self.good))

    @property
    def tokens_per_response(self) -> float:
        return sum(s.tokens for s in self.good) / max(1, len(self.good))


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Setup:
    base_url: str
    upstreams: dict[str, str]
    """Model name → the fake replica's root URL (``fast``, ``paced``, ``long``, ``hold``)."""
    secret: str
    daphne: Process
    """The web tier: ``manage.py serve`` (one or several processes; CPU is summed over all)."""
    fakes: list[Process]
    database_url: str | None
    port: int = 0
    server: str = "uvicorn"
    processes: int = 1
    env: dict[str, str] = field(default_factory=dict)
    logs: Path | None = None

    def web_argv(self, processes: int) -> list[str]:
        return [
            PYTHON,
            "manage.py",
            "serve",
            "--server",
            self.server,
            "--processes",
            str(processes),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]

    def restart_web(self, *, processes: int, name: str) -> None:
        """A fresh web tier (same port) with ``processes`` processes: memory is measured from a
        clean start, not on top of the allocator's high-water mark from the throughput phases."""
        self.daphne.stop()
        self.processes = processes
        self.daphne = Process(name, self.web_argv(processes), self.env, self.logs)
        wait_web(self)


def wait_web(setup: Setup) -> None:
    """Up when every process answers: with several, each needs its own warm-up request or the
    first phase measures their start-up."""
    wait_http(f"{setup.base_url}/healthz", setup.daphne)
    deadline = time.monotonic() + 60
    while len(process_tree(setup.daphne.pid)) < setup.processes and time.monotonic() < deadline:
        time.sleep(0.2)
    for _ in range(8 * setup.processes):
        httpx.get(f"{setup.base_url}/healthz", timeout=5)


def start_everything(args: argparse.Namespace, workdir: Path) -> Setup:
    logs = workdir
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "WARNING",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-secret-key-" + "x" * 40),
        "API_KEY_PEPPER": os.environ.get("API_KEY_PEPPER", "bench-pepper"),
        "ALLOWED_HOSTS": "*",
        "SECURE_SSL_REDIRECT": "false",
        "PLATFORM_DATA_DIR": str(workdir / "data"),
    }
    database_url = None
    if args.sqlite:
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
    else:
        database_url = args.database_url
        recreate_postgres_database(database_url)
        env["DATABASE_URL"] = database_url
        env["REDIS_URL"] = args.redis_url
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO, env=env, check=True
    )

    fake = [PYTHON, "-m", "testsupport.fake_vllm", "--no-record", "--max-model-len", "8192"]
    flavours = {
        # As fast as it can: what the platform adds when the upstream costs nothing.
        "fast": ["--output-tokens", str(args.tokens)],
        # A decode rate like a real engine's: does the platform keep up?
        "paced": [
            "--output-tokens",
            str(args.paced_tokens),
            "--tokens-per-second",
            str(args.paced_rate),
        ],
        # A long answer at the same rate: the platform's CPU per additional token.
        "long": [
            "--output-tokens",
            str(args.long_tokens),
            "--tokens-per-second",
            str(args.paced_rate),
        ],
        # Headers, then silence: streams that stay open (memory per open stream).
        "hold": ["--ttft", "3600"],
    }
    ports = {name: free_port() for name in flavours}
    fakes = [
        Process(f"fake-{name}", [*fake, "--port", str(ports[name]), *extra], env, logs)
        for name, extra in flavours.items()
    ]
    models = {name: f"http://127.0.0.1:{port}/v1" for name, port in ports.items()}
    daphne_port = free_port()
    done = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", SETUP_SCRIPT.format(models=json.dumps(models))],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("BENCH-SETUP "))
    secret = json.loads(line.removeprefix("BENCH-SETUP "))["secret"]
    setup = Setup(
        base_url=f"http://127.0.0.1:{daphne_port}",
        upstreams={name: f"http://127.0.0.1:{port}" for name, port in ports.items()},
        secret=secret,
        daphne=None,  # type: ignore[arg-type]
        fakes=fakes,
        database_url=database_url,
        port=daphne_port,
        server=args.server,
        processes=args.processes,
        env=env,
        logs=logs,
    )
    # As platform/Procfile runs it.
    setup.daphne = Process("web", setup.web_argv(args.processes), env, logs)
    for process, name in zip(fakes, flavours, strict=True):
        wait_http(f"http://127.0.0.1:{ports[name]}/health", process)
    wait_web(setup)
    return setup


PROMPT = "Write a long story about a lighthouse keeper."

REAL_SETUP_SCRIPT = """
from engines.models import EngineReplica, ServedModel

model = ServedModel.objects.create(name={name!r}, upstream_model={name!r}, context_length=4096)
EngineReplica.objects.create(model=model, base_url={url!r} + "/v1")
"""
REAL_PROFILE = "smollm2-135m-instruct"  # the embedded default (platform/engines/)


def start_profiler(args: argparse.Namespace, pid: int) -> subprocess.Popen:
    """py-spy on daphne (not a project dependency: ``pip install py-spy`` to use it)."""
    argv = [args.py_spy_bin, "record", "-p", str(pid), "-o", args.py_spy, "-r", "200"]
    argv += ["--nonblocking", "--subprocesses"]
    if args.py_spy.endswith(".txt"):
        argv += ["--format", "raw"]  # collapsed stacks, one line per stack (for grep)
    if args.py_spy_idle:
        argv.append("--idle")
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def new_client() -> httpx.AsyncClient:
    """A client with a pool large enough for every stream of a phase. One per phase, so no
    phase reuses keep-alive connections that went idle (and maybe stale) during another."""
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=4096, max_keepalive_connections=512),
        timeout=httpx.Timeout(120.0, connect=30.0),
        trust_env=False,
    )


async def run_throughput(
    setup: Setup, args: argparse.Namespace, *, model: str, levels: list[int] | None = None
) -> list[tuple[Phase, Phase]]:
    """Direct vs platform at each concurrency, against the ``model`` fake (fast or paced)."""
    auth = {"Authorization": f"Bearer {setup.secret}"}
    direct_body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    platform_body = {"model": model, "input": PROMPT, "stream": True, "store": not args.no_store}
    upstream = f"{setup.upstreams[model]}/v1/chat/completions"

    def direct(client: httpx.AsyncClient) -> Awaitable[Sample]:
        return one_stream(client, upstream, direct_body, {}, _is_direct_token)

    def through(client: httpx.AsyncClient) -> Awaitable[Sample]:
        return one_stream(
            client, f"{setup.base_url}/v1/responses", platform_body, auth, _is_platform_token
        )

    # Warm up both paths: the web processes' engine and replica pools, caches, the fakes (the
    # long answers take 20 s each: by then the other upstreams warmed everything).
    if model != "long":
        async with new_client() as client:
            warm = 8 * setup.processes
            await closed_loop(lambda: direct(client), concurrency=warm, total=2 * warm)
            await closed_loop(lambda: through(client), concurrency=warm, total=2 * warm)

    results = []
    for concurrency in levels or args.concurrency:
        total = max(args.min_requests, concurrency * args.rounds)
        if model == "long":  # 20 s per response: one round is plenty
            total = concurrency
        pair = []
        for name, request in (("direct", direct), ("platform", through)):
            processes = {"web": setup.daphne, **{p.name: p for p in setup.fakes}}
            before = {key: cpu_seconds(p.pid) for key, p in processes.items()}
            before["web-system"] = cpu_seconds(setup.daphne.pid, system_only=True)
            profiler = None
            if (
                args.py_spy
                and model == args.py_spy_upstream
                and name == "platform"
                and concurrency == args.py_spy_at
            ):
                profiler = start_profiler(args, setup.daphne.pid)
                await asyncio.sleep(1.0)
            async with new_client() as client:
                samples, wall = await closed_loop(
                    functools.partial(request, client), concurrency=concurrency, total=total
                )
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(60)
            after = {key: cpu_seconds(p.pid) for key, p in processes.items()}
            after["web-system"] = cpu_seconds(setup.daphne.pid, system_only=True)
            phase = Phase(name, concurrency, samples, wall)
            phase.cpu = {key: after[key] - before[key] for key in after}
            phase.cpu["upstream"] = phase.cpu[f"fake-{model}"]
            pair.append(phase)
            print(
                f"  {model:5} {name:8} c={concurrency:<4} n={len(samples):<5} "
                f"err={phase.errors:<3} ttfe p50={phase.p('first_event', 0.5):8.2f}ms "
                f"p99={phase.p('first_event', 0.99):8.2f}ms "
                f"ttft p50={phase.p('first_token', 0.5):8.2f}ms "
                f"p99={phase.p('first_token', 0.99):8.2f}ms "
                f"tok/s={phase.tokens_per_second:8.0f} web cpu={phase.cpu['web']:.1f}s "
                f"(system {phase.cpu['web-system']:.1f}s) "
                f"({phase.cpu_per_response * 1000:.1f} ms/response)",
                flush=True,
            )
            bad = [s.error for s in samples if not s.ok][:3]
            if bad:
                print(f"    errors: {bad}", flush=True)
        results.append((pair[0], pair[1]))
    return results


def start_real_engine(setup: Setup, args: argparse.Namespace) -> tuple[Process, str, str]:
    """The real CPU vLLM as ``manage.py runengine`` runs it (engine venv, embedded profile,
    model prepared by ``manage.py prepare_model`` on first use, in ``--real-engine-data-dir``),
    registered as a model of the platform, and a fresh web tier that sees it. Returns the
    process, its root URL and the served model name."""
    venv = Path(os.environ.get("ENGINE_VENV", REPO / ".venv-engine"))
    if not (venv / "bin" / "python").exists():
        raise RuntimeError(
            f"no engine venv at {venv} (scripts/engine-venv.sh installs it); real-engine row "
            "not measured"
        )
    profile = json.loads((REPO / "platform" / "engines" / f"{REAL_PROFILE}.json").read_text())
    name = profile["served_model_name"]
    port = free_port()
    env = {**setup.env, "PLATFORM_DATA_DIR": str(Path(args.real_engine_data_dir).resolve())}
    engine = Process(
        "real-vllm",
        [PYTHON, "manage.py", "runengine", "--port", str(port), "--ready-timeout", "900"],
        env,
        setup.logs,
    )
    root = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{root}/health", engine, within=1200)
        subprocess.run(
            [PYTHON, "manage.py", "shell", "-c", REAL_SETUP_SCRIPT.format(name=name, url=root)],
            cwd=REPO,
            env=setup.env,
            check=True,
            capture_output=True,
        )
        # A fresh web tier sees the new model at once (no registry refresh to wait for).
        setup.restart_web(processes=setup.processes, name="web-real")
    except BaseException:
        engine.stop()
        raise
    return engine, root, name


async def run_real_engine(setup: Setup, args: argparse.Namespace) -> list[Phase]:
    """``--real-engine-streams`` concurrent streams to the real vLLM, direct and through the
    platform, in the order direct, platform, platform, direct (the machine's load drifts; each
    path gets one early and one late turn). Greedy sampling and the same prompt and length on
    both paths, so both ask the engine for the same work."""
    engine, root, name = start_real_engine(setup, args)
    try:
        tokens = args.real_engine_tokens
        auth = {"Authorization": f"Bearer {setup.secret}"}
        direct_body = {
            "model": name,
            "messages": [{"role": "user", "content": PROMPT}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": tokens,
            "temperature": 0,
        }
        platform_body = {
            "model": name,
            "input": PROMPT,
            "stream": True,
            "store": not args.no_store,
            "max_output_tokens": tokens,
            "temperature": 0,
        }
        paths = {
            "direct": lambda client: one_stream(
                client, f"{root}/v1/chat/completions", direct_body, {}, _is_direct_token
            ),
            "platform": lambda client: one_stream(
                client, f"{setup.base_url}/v1/responses", platform_body, auth, _is_platform_token
            ),
        }
        streams = args.real_engine_streams
        async with new_client() as client:  # warm-up: the engine's caches, the web processes
            for request in paths.values():
                await closed_loop(lambda r=request: r(client), concurrency=streams, total=streams)
        phases = []
        for path in ("direct", "platform", "platform", "direct"):
            processes = {"web": setup.daphne, "engine": engine}
            before = {key: cpu_seconds(p.pid) for key, p in processes.items()}
            async with new_client() as client:
                samples, wall = await closed_loop(
                    functools.partial(paths[path], client),
                    concurrency=streams,
                    total=args.real_engine_requests,
                )
            after = {key: cpu_seconds(p.pid) for key, p in processes.items()}
            phase = Phase(path, streams, samples, wall)
            phase.cpu = {key: after[key] - before[key] for key in after}
            phases.append(phase)
            print(
                f"  real  {path:8} c={streams:<4} n={len(samples):<5} err={phase.errors:<3} "
                f"ttft p50={phase.p('first_token', 0.5):8.2f}ms "
                f"tok/s={phase.tokens_per_second:8.1f} "
                f"tokens/response={phase.tokens_per_response:.0f}",
                flush=True,
            )
            bad = [s.error for s in samples if not s.ok][:3]
            if bad:
                print(f"    errors: {bad}", flush=True)
        return phases
    finally:
        engine.stop()


def _real_engine_lines(args: argparse.Namespace, phases: list[Phase] | str) -> list[str]:
    if isinstance(phases, str):
        return [f"**Real CPU vLLM**: not measured: {phases}", ""]

    def combined(name: str) -> tuple[float, float, int, int]:
        mine = [p for p in phases if p.name == name]
        tokens = sum(s.tokens for p in mine for s in p.good)
        wall = sum(p.wall for p in mine)
        ttft = percentile([s.first_token for p in mine for s in p.good], 0.5) * 1000
        return tokens / wall, ttft, sum(len(p.samples) for p in mine), sum(p.errors for p in mine)

    direct, through = combined("direct"), combined("platform")
    lines = [
        f"**Real CPU vLLM** ({args.real_engine_streams} concurrent streams, "
        f"{args.real_engine_tokens} tokens per answer, greedy; direct, platform, platform, "
        "direct; tokens/s over both turns of each path):",
        "",
        "| path | requests | errors | first token p50 ms | tokens/s |",
        "|---|---:|---:|---:|---:|",
        f"| direct | {direct[2]} | {direct[3]} | {direct[1]:.1f} | {direct[0]:,.1f} |",
        f"| platform | {through[2]} | {through[3]} | {through[1]:.1f} | {through[0]:,.1f} |",
        f"| **ratio** | | | **{through[1] - direct[1]:+.1f}** "
        f"| **{through[0] / direct[0]:.2f}×** |",
        "",
    ]
    return lines


async def _last_event(lines: AsyncIterator[str]) -> str:
    last = "none"
    try:
        async for line in lines:
            if line.startswith("event: "):
                last = line.removeprefix("event: ")
    except httpx.HTTPError as exc:
        return f"{last} then {exc!r}"
    return last


async def hold_one(
    client: httpx.AsyncClient,
    setup: Setup,
    body: dict,
    ready: asyncio.Semaphore,
    release: asyncio.Event,
    failures: list[str],
    opening: asyncio.Semaphore | None = None,
) -> None:
    """Open one stream, wait for ``response.in_progress``, signal ``ready``, hold it open until
    ``release`` (a failure signals ``ready`` too, so the caller never waits forever).
    ``opening`` bounds how many streams are being opened at once (not how many are open):
    a thousand clients do not all connect in the same millisecond."""
    signalled = False
    try:
        async with contextlib.AsyncExitStack() as stack:
            if opening is not None:
                await opening.acquire()
            try:
                response = await stack.enter_async_context(
                    client.stream(
                        "POST",
                        f"{setup.base_url}/v1/responses",
                        json=body,
                        headers={"Authorization": f"Bearer {setup.secret}"},
                    )
                )
                if response.status_code != 200:
                    text = (await response.aread())[:200]
                    failures.append(f"{response.status_code}: {text!r}")
                    return
                lines = response.aiter_lines()
                async for line in lines:
                    if line == "event: response.in_progress":
                        break
            finally:
                if opening is not None:
                    opening.release()
            ready.release()
            signalled = True
            # Keep reading while held (keep-alives): a stream the server ends early is a
            # failure, not an open stream.
            rest = asyncio.ensure_future(_last_event(lines))
            released = asyncio.ensure_future(release.wait())
            done, _ = await asyncio.wait({rest, released}, return_when=asyncio.FIRST_COMPLETED)
            if rest in done:
                failures.append(f"ended while held, last event: {rest.result()}")
                await released
            else:
                rest.cancel()
                with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                    await rest
    except httpx.HTTPError as exc:
        failures.append(repr(exc))
    finally:
        if not signalled:
            ready.release()


async def run_memory(
    setup: Setup, client: httpx.AsyncClient, args: argparse.Namespace
) -> list[dict[str, float]]:
    body = {"model": "hold", "input": PROMPT, "stream": True}
    rows = []

    def snapshot() -> dict[str, float]:
        status = proc_status(setup.daphne.pid)
        if setup.database_url:
            status["db_connections"] = postgres_connections(setup.database_url)
        return status

    setup.restart_web(processes=1, name="web-memory")
    # Warm up the fresh process (imports, engine, connection pools) with a few held streams.
    ready, release, failures = asyncio.Semaphore(0), asyncio.Event(), []
    warm = [
        asyncio.create_task(hold_one(client, setup, body, ready, release, failures))
        for _ in range(8)
    ]
    for _ in warm:
        await ready.acquire()
    release.set()
    await asyncio.gather(*warm)
    await asyncio.sleep(args.settle)
    idle = snapshot()
    rows.append({"open": 0, **idle})
    print(f"  idle: {idle}", flush=True)
    for count in args.hold:
        ready = asyncio.Semaphore(0)
        release = asyncio.Event()
        failures: list[str] = []
        opened_at = time.perf_counter()
        opening = asyncio.Semaphore(args.open_concurrency)
        tasks = [
            asyncio.create_task(hold_one(client, setup, body, ready, release, failures, opening))
            for _ in range(count)
        ]
        for _ in range(count):
            await ready.acquire()
        open_seconds = time.perf_counter() - opened_at
        await asyncio.sleep(args.settle)
        held = snapshot()
        release.set()
        await asyncio.gather(*tasks)
        per_stream = (held["rss_kib"] - idle["rss_kib"]) / count if count else 0.0
        row = {
            "open": count,
            **held,
            "per_stream_kib": per_stream,
            "open_seconds": open_seconds,
            "failures": len(failures),
        }
        rows.append(row)
        print(f"  {count} open: {row}" + (f" e.g. {failures[:2]}" if failures else ""), flush=True)
        # Wait for the server to let go of everything (threads, connections) before the next.
        await drained(snapshot, idle, within=args.drain)
    began = time.perf_counter()
    settled = await drained(snapshot, idle, within=args.drain)
    rows.append({"open": "after", **settled, "open_seconds": time.perf_counter() - began})
    print(f"  after: {rows[-1]}", flush=True)
    return rows


async def drained(
    snapshot: Callable[[], dict[str, float]], idle: dict[str, float], *, within: float
) -> dict[str, float]:
    """Poll until daphne is back to its idle threads and database connections (± 2), counting
    the request threads its ASGI handler keeps for reuse (api/handler.py) as idle."""
    kept = int(os.environ.get("ASGI_IDLE_REQUEST_THREADS", "64"))
    deadline = time.perf_counter() + within
    current = snapshot()
    while time.perf_counter() < deadline:
        if (
            current["threads"] <= idle["threads"] + 2 + kept
            and (current.get("db_connections") or 0) <= (idle.get("db_connections") or 0) + 2
        ):
            break
        await asyncio.sleep(0.5)
        current = snapshot()
    return current


# --- the report ----------------------------------------------------------------------------------


def machine() -> str:
    cores = os.cpu_count()
    with open("/proc/meminfo") as handle:
        total_kib = int(handle.readline().split()[1])
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{cores} cores ({model or platform_module.machine()}), "
        f"{total_kib / 1024 / 1024:.0f} GiB RAM, CPU only; Linux {platform_module.release()}, "
        f"Python {platform_module.python_version()}"
    )


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"


def _throughput_table(pairs: list[tuple[Phase, Phase]]) -> list[str]:
    lines = [
        "| streams | path | requests | errors | first event p50 | p99 | first token p50 | p99 "
        "| tokens/s | web CPU s | web CPU ms per response | upstream CPU s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for direct, through in pairs:
        for phase in (direct, through):
            lines.append(
                f"| {phase.concurrency} | {phase.name} | {len(phase.samples)} | {phase.errors} "
                f"| {phase.p('first_event', 0.5):.2f} | {phase.p('first_event', 0.99):.2f} "
                f"| {phase.p('first_token', 0.5):.2f} | {phase.p('first_token', 0.99):.2f} "
                f"| {phase.tokens_per_second:,.0f} | {phase.cpu.get('web', 0):.1f} "
                f"| {phase.cpu_per_response * 1000:.1f} "
                f"| {phase.cpu.get('upstream', 0):.1f} |"
            )
        lines.append(
            f"| {direct.concurrency} | **added / ratio** | | "
            f"| **{through.p('first_event', 0.5) - direct.p('first_event', 0.5):+.2f}** "
            f"| **{through.p('first_event', 0.99) - direct.p('first_event', 0.99):+.2f}** "
            f"| **{through.p('first_token', 0.5) - direct.p('first_token', 0.5):+.2f}** "
            f"| **{through.p('first_token', 0.99) - direct.p('first_token', 0.99):+.2f}** "
            f"| **{through.tokens_per_second / direct.tokens_per_second:.2f}×** | | | |"
        )
    return lines


def render(
    args: argparse.Namespace,
    throughput: dict[str, list[tuple[Phase, Phase]]],
    memory: list[dict[str, float]],
    scaling: dict[int, list[tuple[Phase, Phase]]],
    *,
    load: str,
    real: list[Phase] | str = (),
) -> str:
    store = "store=false" if args.no_store else "store=true (the default)"
    lines = [
        f"Run `{' '.join(['python -m bench.streams', *sys.argv[1:]])}` on {machine()}; "
        f"commit `{commit()}`, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; "
        f"{'SQLite (embedded default)' if args.sqlite else 'PostgreSQL + Redis'}; "
        f"web tier `manage.py serve --server {args.server} --processes {args.processes}`; "
        f"one token per chunk, {store}; load average at the start {load}, at the end "
        "{:.2f} {:.2f} {:.2f} (other work shares the machine: compare CPU per response, "
        "not wall-clock ratios, across runs).".format(*os.getloadavg()),
        "",
    ]
    if "fast" in throughput:
        lines += [
            f"**Fast upstream** ({args.tokens} tokens per stream, no delays). Closed loop; "
            "times in ms; *added* = platform percentile − direct percentile; ratio = platform "
            "tokens/s ÷ direct tokens/s:",
            "",
            *_throughput_table(throughput["fast"]),
            "",
        ]
    if "paced" in throughput:
        lines += [
            f"**Paced upstream** ({args.paced_tokens} tokens per stream at {args.paced_rate:g} "
            "tokens/s, like a real engine's decode rate):",
            "",
            *_throughput_table(throughput["paced"]),
            "",
        ]
    if "long" in throughput:
        lines += [
            f"**Long answers** ({args.long_tokens} tokens per stream at {args.paced_rate:g} "
            "tokens/s):",
            "",
            *_throughput_table(throughput["long"]),
            "",
        ]
        per_token = _cpu_per_token(throughput.get("paced", []), throughput["long"])
        if per_token:
            lines += [per_token, ""]
    if scaling:
        lines += [
            f"**Web processes** (`--processes`, {args.server}; fast upstream, {args.tokens} "
            "tokens per stream; the platform rows only):",
            "",
            "| processes | streams | requests | errors | first event p50 | p99 | tokens/s "
            "| web CPU ms per response | tokens/s ÷ 1 process |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        base = {}
        for processes, pairs in scaling.items():
            for _, through in pairs:
                base.setdefault(through.concurrency, through.tokens_per_second)
                lines.append(
                    f"| {processes} | {through.concurrency} | {len(through.samples)} "
                    f"| {through.errors} | {through.p('first_event', 0.5):.2f} "
                    f"| {through.p('first_event', 0.99):.2f} "
                    f"| {through.tokens_per_second:,.0f} "
                    f"| {through.cpu_per_response * 1000:.1f} "
                    f"| {through.tokens_per_second / base[through.concurrency]:.2f}× |"
                )
        lines.append("")
    if real:
        lines += _real_engine_lines(args, real)
    if memory:
        lines += _memory_table(memory)
    return "\n".join(lines)


def _cpu_per_token(short: list[tuple[Phase, Phase]], long: list[tuple[Phase, Phase]]) -> str | None:
    """CPU per additional token: the long and the short paced rows at the same concurrency."""
    shorts = {through.concurrency: through for _, through in short}
    parts = []
    for _, through in long:
        other = shorts.get(through.concurrency)
        if other is None or through.tokens_per_response <= other.tokens_per_response:
            continue
        extra = through.tokens_per_response - other.tokens_per_response
        micros = (through.cpu_per_response - other.cpu_per_response) / extra * 1e6
        responses = max(1, len(through.good)), max(1, len(other.good))
        system = (
            through.cpu.get("web-system", 0) / responses[0]
            - other.cpu.get("web-system", 0) / responses[1]
        ) / extra
        parts.append(
            f"at {through.concurrency} streams: ({through.cpu_per_response * 1000:.1f} − "
            f"{other.cpu_per_response * 1000:.1f} ms) / {extra:.0f} tokens = **{micros:.1f} µs**"
            f" (of which system time {system * 1e6:.1f} µs)"
        )
    if not parts:
        return None
    return (
        "Web CPU per additional token (long row − paced row, same concurrency): "
        + "; ".join(parts)
        + "."
    )


def _memory_table(memory: list[dict[str, float]]) -> list[str]:
    lines = [
        "**Memory per open stream** (one web process's RSS with N streams held open on a model "
        "whose upstream sends nothing; per stream = (RSS − idle RSS) / N):",
        "",
        "| open streams | RSS MiB | per stream KiB | threads | fds | DB connections "
        "| seconds to open all (after: to drain) | failed |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in memory:
        lines.append(
            f"| {row['open']} | {row['rss_kib'] / 1024:.0f} "
            f"| {row.get('per_stream_kib', 0):.0f} | {row['threads']} | {row['fds']} "
            f"| {row.get('db_connections', '–')} | {row.get('open_seconds', 0):.1f} "
            f"| {row.get('failures', 0)} |"
        )
    return lines


def write_doc(section: str) -> None:
    if DOC.exists():
        text = DOC.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            DOC.write_text(f"{head}{BEGIN}\n{section}\n{END}{tail}")
            return
    else:
        text = "# Performance\n"
    DOC.write_text(f"{text.rstrip()}\n\n## Latest run\n\n{BEGIN}\n{section}\n{END}\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.streams", description=__doc__)
    parser.add_argument(
        "--database-url",
        default="postgres://postgres@127.0.0.1:5432/responses_bench",
        help="a database the benchmark may drop and create (default: %(default)s)",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--sqlite", action="store_true", help="the embedded default instead")
    parser.add_argument("--tokens", type=int, default=256, help="tokens per fast stream")
    parser.add_argument("--paced-tokens", type=int, default=64, help="tokens per paced stream")
    parser.add_argument("--long-tokens", type=int, default=1024, help="tokens per long stream")
    parser.add_argument(
        "--long-concurrency", type=int, nargs="+", default=[32], help="streams of the long row"
    )
    parser.add_argument(
        "--server", choices=("uvicorn", "daphne"), default="uvicorn", help="WEB_SERVER"
    )
    parser.add_argument(
        "--processes", type=int, default=len(os.sched_getaffinity(0)), help="WEB_PROCESSES"
    )
    parser.add_argument(
        "--scaling",
        type=int,
        nargs="*",
        default=[1, 2],
        help="also run the fast upstream with each of these numbers of web processes",
    )
    parser.add_argument(
        "--scaling-at", type=int, nargs="+", default=[32, 256], help="streams of those rows"
    )
    parser.add_argument(
        "--paced-rate", type=float, default=50.0, help="paced upstream, tokens/s per stream"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32, 256])
    parser.add_argument("--rounds", type=int, default=2, help="requests per stream slot")
    parser.add_argument("--min-requests", type=int, default=64)
    parser.add_argument("--hold", type=int, nargs="+", default=[1, 32, 256, 1000])
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before sampling")
    parser.add_argument(
        "--open-concurrency", type=int, default=64, help="streams being opened at once"
    )
    parser.add_argument(
        "--drain", type=float, default=120.0, help="max seconds to wait for daphne to idle"
    )
    parser.add_argument("--no-store", action="store_true", help="send store=false")
    parser.add_argument(
        "--real-engine",
        action="store_true",
        help="also measure the real CPU vLLM (engine venv) direct vs through the platform",
    )
    parser.add_argument("--real-engine-streams", type=int, default=8)
    parser.add_argument("--real-engine-tokens", type=int, default=128)
    parser.add_argument("--real-engine-requests", type=int, default=32, help="per turn")
    parser.add_argument(
        "--real-engine-data-dir",
        default=str(REPO / ".data"),
        help="DATA_DIR of the engine: where its model is prepared (default: %(default)s)",
    )
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument(
        "--upstreams",
        nargs="+",
        choices=("fast", "paced", "long"),
        default=["fast", "paced", "long"],
    )
    parser.add_argument(
        "--py-spy",
        metavar="OUT",
        help="profile daphne's platform phase with py-spy (not a project dependency); "
        "OUT.txt = collapsed stacks, else a flame graph SVG",
    )
    parser.add_argument("--py-spy-at", type=int, default=32, help="at this many streams")
    parser.add_argument(
        "--py-spy-upstream",
        default="paced",
        choices=("fast", "paced", "long"),
        help="during this upstream's phase",
    )
    parser.add_argument("--py-spy-idle", action="store_true", help="sample idle threads too")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--no-doc", action="store_true", help="do not update docs/performance.md")
    parser.add_argument("--quick", action="store_true", help="small numbers, no doc update")
    args = parser.parse_args(argv)
    if args.quick:
        args.concurrency, args.rounds, args.min_requests = [1, 8], 2, 16
        args.hold, args.settle, args.no_doc = [1, 16], 1.0, True
        args.long_tokens, args.long_concurrency, args.scaling = 128, [8], []
    args.py_spy_bin = None
    if args.py_spy:
        args.py_spy_bin = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    return args


async def measure(setup: Setup, args: argparse.Namespace):
    throughput = {}
    for model in () if args.skip_throughput else args.upstreams:
        print(f"throughput ({model} upstream):", flush=True)
        throughput[model] = await run_throughput(
            setup, args, model=model, levels=args.long_concurrency if model == "long" else None
        )
    scaling = {}
    for processes in () if args.skip_throughput else args.scaling:
        print(f"scaling ({processes} web processes, fast upstream):", flush=True)
        setup.restart_web(processes=processes, name=f"web-{processes}")
        scaling[processes] = await run_throughput(setup, args, model="fast", levels=args.scaling_at)
    real: list[Phase] | str = []
    if args.real_engine:
        print("real engine:", flush=True)
        try:
            real = await run_real_engine(setup, args)
        except RuntimeError as exc:
            print(f"  {exc}", flush=True)
            real = str(exc)
    memory = []
    if not args.skip_memory:
        print("memory:", flush=True)
        async with new_client() as client:
            memory = await run_memory(setup, client, args)
    return throughput, memory, scaling, real


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    load = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    setup = None
    try:
        setup = start_everything(args, workdir)
        print(f"web pid {setup.daphne.pid} at {setup.base_url}; logs in {workdir}", flush=True)
        throughput, memory, scaling, real = asyncio.run(measure(setup, args))
        setup.daphne.check()
        section = render(args, throughput, memory, scaling, load=load, real=real)
        print()
        print(section)
        if not args.no_doc:
            write_doc(section)
            print(f"\nwritten to {DOC}")
    finally:
        if setup is not None:
            for process in (setup.daphne, *setup.fakes):
                process.stop()
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
