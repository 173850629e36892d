"""What one ``POST /v1/responses`` costs the web process, without the network in the way.

::

    .venv/bin/python -m bench.request_cost --database-url postgres://postgres@127.0.0.1:5432/cost
    .venv/bin/python -m bench.request_cost --requests 300 --profile loop.prof   # cProfile, loop

One process: the real ASGI application (``config.asgi``: the edge, Django, every middleware,
the view, quotas, the stored row, finalize, settlement) driven in-process under uvloop, and a
scripted engine at the engine seam (``--tokens`` one-word deltas, no delay). Requests go one
after another, streamed and stored, after a warm-up. It reports, per request: CPU of the whole
process (every thread) and of the event loop's thread alone, wall time, time to
``response.created``, and what the request made the process do: hand-offs to threads, with the
CPU spent inside each
(``sync_to_async`` calls, by function; "inline" when the call runs on the event loop itself) and
SQL statements (by their first words). Unlike
``bench.streams`` it has no sockets, no upstream process and no load generator sharing the cores,
so it moves far less between runs on a busy machine; it is the per-request part of that
benchmark's "CPU per response", not the per-token part.

The database given is dropped and created afresh (default: ``responses_request_cost``). Nothing
here is imported by the platform or the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default="postgres://postgres@127.0.0.1:5432/responses_request_cost",
        help="a database this may drop and create",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warm-up", type=int, default=30)
    parser.add_argument("--tokens", type=int, default=64, help="deltas per response")
    parser.add_argument("--profile", metavar="OUT", help="cProfile of the event loop's thread")
    return parser.parse_args(argv)


def _configure(args: argparse.Namespace) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["DATABASE_URL"] = args.database_url
    os.environ["REDIS_URL"] = args.redis_url
    os.environ.setdefault("SECRET_KEY", "bench-secret-key-" + "x" * 40)
    os.environ.setdefault("API_KEY_PEPPER", "bench-pepper")
    os.environ.setdefault("ALLOWED_HOSTS", "*")
    os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("PLATFORM_DATA_DIR", str(REPO / ".data" / "bench-request-cost"))


def _recreate_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def _set_up(tokens: int) -> str:
    """Migrate; an organization, a key and a scripted model. Returns the key's secret."""
    from django.core.management import call_command

    from engines.models import ServedModel
    from engines.runtime.registry import register_engine_override
    from tenants.services.api_keys import api_key_issue
    from tenants.services.organizations import organization_create
    from testsupport.scripted_engine import ScriptedEngine, build_script

    call_command("migrate", verbosity=0)
    organization = organization_create(name="Cost", slug="cost")
    secret = api_key_issue(organization=organization, name="cost").secret
    ServedModel.objects.create(name="scripted", upstream_model="scripted", context_length=8192)
    register_engine_override(
        "scripted", ScriptedEngine(build_script(text=" ".join(["w"] * tokens)))
    )
    return secret


class Counts:
    """Thread hand-offs and SQL statements, counted while ``on``."""

    def __init__(self) -> None:
        self.on = False
        self.seen: collections.Counter[str] = collections.Counter()
        self.cpu: collections.Counter[str] = collections.Counter()
        """CPU seconds spent inside each hand-off, in the thread that ran it."""

    def install(self) -> None:
        import psycopg
        from asgiref import sync

        try:  # run on the event loop itself rather than handed to a thread (api.handler)
            from api.handler import bookkeeping_inline
        except ImportError:  # a version of the platform without it
            bookkeeping_inline = None

        counts = self
        handoff = sync.SyncToAsync.__call__
        thread_handler = sync.SyncToAsync.thread_handler
        execute = psycopg.Cursor.execute
        copy = psycopg.Cursor.copy

        async def counted_handoff(self, *args, **kwargs):
            if counts.on:
                name = getattr(self.func, "__qualname__", type(self.func).__name__)
                inline = (
                    self._thread_sensitive
                    and bookkeeping_inline is not None
                    and bookkeeping_inline.get()
                )
                counts.seen[f"{'inline  ' if inline else 'hand-off'}  {name}"] += 1
            return await handoff(self, *args, **kwargs)

        def timed_thread_handler(self, *args, **kwargs):
            if not counts.on:
                return thread_handler(self, *args, **kwargs)
            started = time.thread_time()
            try:
                return thread_handler(self, *args, **kwargs)
            finally:
                name = getattr(self.func, "__qualname__", type(self.func).__name__)
                counts.cpu[name] += time.thread_time() - started

        def counted_execute(self, query, *args, **kwargs):
            if counts.on:
                words = " ".join(str(query).split()[:3])
                counts.seen[f"SQL       {words[:60]}"] += 1
            return execute(self, query, *args, **kwargs)

        def counted_copy(self, statement, *args, **kwargs):
            if counts.on:
                counts.seen[f"SQL       {' '.join(str(statement).split()[:2])}"] += 1
            return copy(self, statement, *args, **kwargs)

        sync.SyncToAsync.__call__ = counted_handoff
        sync.SyncToAsync.thread_handler = timed_thread_handler
        psycopg.Cursor.execute = counted_execute
        psycopg.Cursor.copy = counted_copy


def _thread_cpu() -> tuple[float, float]:
    """CPU seconds of (the event loop's thread, every thread) of this process."""
    ticks = os.sysconf("SC_CLK_TCK")
    loop_thread = every = 0.0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / ticks
        every += seconds
        if int(tid) == os.getpid():
            loop_thread = seconds
    return loop_thread, every


async def _one(application, secret: str, body: bytes) -> float:
    """One streamed create; seconds to ``response.created``."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/responses",
        "raw_path": b"/v1/responses",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {secret}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    started = time.perf_counter()
    first_event: float | None = None
    status: int | None = None
    done = asyncio.Event()
    received = False
    chunks: list[bytes] = []

    async def receive():
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        nonlocal first_event, status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunk = message.get("body", b"")
            if first_event is None and b"response.created" in chunk:
                first_event = time.perf_counter() - started
            chunks.append(chunk)
            if not message.get("more_body"):
                done.set()

    await application(scope, receive, send)
    if status != 200 or first_event is None:
        raise RuntimeError(f"request failed: {status} {b''.join(chunks)[:500]!r}")
    return first_event


async def measure(args: argparse.Namespace, secret: str, counts: Counts) -> dict:
    from config.asgi import application

    body = json.dumps({"model": "scripted", "input": "Tell a story.", "stream": True}).encode()
    for _ in range(args.warm_up):
        await _one(application, secret, body)
    await asyncio.sleep(0.5)  # let the warm-up's settlements finish
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    counts.on = True
    loop_before, every_before = _thread_cpu()
    wall_before = time.perf_counter()
    first_events = [await _one(application, secret, body) for _ in range(args.requests)]
    wall = time.perf_counter() - wall_before
    loop_after, every_after = _thread_cpu()
    counts.on = False
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    first_events.sort()
    n = args.requests
    return {
        "cpu_ms": (every_after - every_before) / n * 1000,
        "loop_cpu_ms": (loop_after - loop_before) / n * 1000,
        "wall_ms": wall / n * 1000,
        "first_event_p50_ms": first_events[n // 2] * 1000,
        "first_event_p99_ms": first_events[min(n - 1, int(n * 0.99))] * 1000,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO))
    _configure(args)
    _recreate_database(args.database_url)

    import django

    django.setup()
    import uvloop

    secret = _set_up(args.tokens)
    counts = Counts()
    counts.install()
    load = os.getloadavg()
    result = uvloop.run(measure(args, secret, counts))
    n = args.requests
    print(
        f"{n} streamed requests of {args.tokens} tokens, one at a time; load average "
        f"{load[0]:.2f} → {os.getloadavg()[0]:.2f}"
    )
    print(
        f"CPU per request: {result['cpu_ms']:.2f} ms (event loop thread {result['loop_cpu_ms']:.2f}"
        f" ms, other threads {result['cpu_ms'] - result['loop_cpu_ms']:.2f} ms); wall "
        f"{result['wall_ms']:.2f} ms; response.created after {result['first_event_p50_ms']:.2f} "
        f"ms p50, {result['first_event_p99_ms']:.2f} ms p99"
    )
    print("per request (count, then CPU ms inside the hand-off):")
    for what, count in sorted(counts.seen.items(), key=lambda item: (-item[1], item[0])):
        if count / n >= 0.05:
            cpu = counts.cpu.get(what.split(maxsplit=1)[1], 0.0) / n * 1000
            print(f"  {count / n:5.2f}  {what}" + (f"  {cpu:.2f} ms" if cpu else ""))


if __name__ == "__main__":
    main()
