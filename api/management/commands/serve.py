"""``manage.py serve``: the web tier, as ``platform/Procfile`` and production run it.

Several web processes behind one listening socket, as many as the machine has cores by default,
so the web tier uses every core (one Python process is one core: docs/performance.md). The
processes share nothing but the database and Redis, as they already did behind a balancer.

* ``WEB_SERVER=uvicorn`` (the default): uvicorn with uvloop and httptools; ``--workers`` when
  there is more than one process (uvicorn's supervisor restarts a worker that dies). It measured
  ~2× less CPU per streamed response than daphne here (docs/performance.md).
* ``WEB_SERVER=daphne``: daphne, supported as before (the live tests run under it). One process
  is daphne itself; several are daphne processes adopting one socket this command binds, and this
  command waits for them and hands them its signals.

``WEB_PROCESSES`` defaults to the number of cores when Redis is configured and to 1 in the
embedded default: there the cache (cancel flags) and the rate limiter live in the process, so a
second process would not see the first one's state.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

APPLICATION = "config.asgi:application"
SERVERS = ("uvicorn", "daphne")


def default_processes() -> int:
    if not settings.REDIS_URL:
        return 1
    return len(os.sched_getaffinity(0))


class Command(BaseCommand):
    help = "Run the web processes (the API and the admin) on one address."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=os.environ.get("WEB_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument(
            "--server", choices=SERVERS, default=os.environ.get("WEB_SERVER", "uvicorn")
        )
        parser.add_argument(
            "--processes",
            type=int,
            default=int(os.environ["WEB_PROCESSES"]) if os.environ.get("WEB_PROCESSES") else None,
            help="web processes (default: the number of cores with Redis, else 1)",
        )
        # Not Twisted's 50 nor uvicorn's 2048-capped default: a burst of new connections to a
        # busy process would otherwise overflow the accept queue (seen at 256 streams).
        parser.add_argument("--backlog", type=int, default=1024)

    def handle(
        self,
        *args,
        host: str,
        port: int,
        server: str,
        processes: int | None,
        backlog: int,
        **options,
    ) -> None:
        if server not in SERVERS:
            raise CommandError(f"WEB_SERVER must be one of {', '.join(SERVERS)}, not {server!r}")
        processes = processes or default_processes()
        if processes < 1:
            raise CommandError("WEB_PROCESSES must be at least 1")
        self.stdout.write(
            f"serving {APPLICATION} with {server} × {processes} on http://{host}:{port}"
        )
        self.stdout.flush()
        if server == "uvicorn":
            _uvicorn(host=host, port=port, processes=processes, backlog=backlog)
        else:
            _daphne(host=host, port=port, processes=processes, backlog=backlog)


def _uvicorn(*, host: str, port: int, processes: int, backlog: int) -> None:
    import uvicorn

    uvicorn.run(
        APPLICATION,
        host=host,
        port=port,
        workers=processes if processes > 1 else None,
        loop="uvloop",
        http="httptools",
        # WebSocket upgrades go to config.asgi's router (Channels) when a WebSocket library is
        # installed (websockets, else wsproto); without one uvicorn refuses them.
        ws="auto",
        lifespan="off",  # Channels' router does not speak the lifespan protocol
        backlog=backlog,
        # The gateway middleware writes one access line per API request, with its request id.
        access_log=False,
        server_header=False,
        # Longer than a load balancer's idle timeout (60 s) and than a client's pause between
        # requests on a kept-alive connection: uvicorn's 5 s closed connections that clients
        # were about to reuse (a reset before the first event, seen at 256 streams).
        timeout_keep_alive=75,
        # Streams still open when the process is told to stop are cut after this long (their
        # rows end incomplete, their reservations settle), as daphne does.
        timeout_graceful_shutdown=10,
    )


def _daphne(*, host: str, port: int, processes: int, backlog: int) -> None:
    daphne = [sys.executable, "-u", "-m", "daphne"]
    if processes == 1:
        endpoint = f"tcp:port={port}:interface={host}:backlog={backlog}"
        os.execv(sys.executable, [*daphne, "-e", endpoint, APPLICATION])
    # One socket, adopted by every daphne: the kernel hands each new connection to one of them.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(backlog)
    listener.setblocking(False)
    fd = listener.fileno()
    os.set_inheritable(fd, True)
    argv = [*daphne, "-e", f"fd:fileno={fd}", APPLICATION]
    children = [subprocess.Popen(argv, pass_fds=(fd,)) for _ in range(processes)]

    def forward(signum, frame) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    # The first process to exit takes the others down: a supervisor (honcho, systemd, the
    # orchestrator) restarts the whole web service, which is stateless.
    status = os.wait()[1]
    forward(signal.SIGTERM, None)
    for child in children:
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    sys.exit(os.waitstatus_to_exitcode(status) if status else 0)
