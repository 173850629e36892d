"""Run the processes of a Procfile together, and restart any of them that dies.

`make run` starts the embedded platform with this (``platform/Procfile``): the web process, the
engine, the Celery worker and beat. It replaces honcho, which stops every process as soon as one
exits: one crashed worker then took the API down with it. Here a process that exits on its own is
started again after a short back-off (1 s, doubling up to 30 s, back to 1 s once it has stayed up
for a minute) and the others keep running; every exit and restart is logged as a line of its own.
Ctrl-C (SIGINT) or SIGTERM stops them all: SIGTERM to each process group, SIGKILL after a grace
period.

Standard library only, so it runs before anything else is installed and needs no Django.

    python scripts/supervise.py [-f platform/Procfile] [--grace 10] [--only web,worker]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

FIRST_BACKOFF_SECONDS = 1.0
LONGEST_BACKOFF_SECONDS = 30.0
# A process that stayed up this long is healthy again: its next crash restarts it at once.
STABLE_AFTER_SECONDS = 60.0
_PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")


def read_procfile(path: Path) -> dict[str, str]:
    commands: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = _PROCFILE_LINE.match(line.strip())
        if match and not line.lstrip().startswith("#"):
            commands[match.group(1)] = match.group(2)
    return commands


class Output:
    """One line at a time on stdout, each prefixed with the time and the process's name."""

    def __init__(self, names: list[str]) -> None:
        self._width = max(len(name) for name in [*names, "supervise"])
        self._lock = threading.Lock()

    def line(self, name: str, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        with self._lock:
            sys.stdout.write(f"{stamp} {name.ljust(self._width)} | {text}\n")
            sys.stdout.flush()


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


@dataclass
class Supervised:
    name: str
    command: str
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = FIRST_BACKOFF_SECONDS
    restart_at: float | None = None
    reader: threading.Thread | None = field(default=None, repr=False)


class Supervisor:
    def __init__(self, commands: dict[str, str], *, grace: float, output: Output) -> None:
        self.children = [Supervised(name, command) for name, command in commands.items()]
        self.grace = grace
        self.output = output
        self.stopping = threading.Event()

    def log(self, text: str) -> None:
        self.output.line("supervise", text)

    def start(self, child: Supervised) -> None:
        child.process = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {child.command}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: a stop reaches its children too
        )
        child.started_at = time.monotonic()
        child.restart_at = None
        child.reader = threading.Thread(
            target=self._relay, args=(child, child.process), daemon=True
        )
        child.reader.start()
        self.log(f"started {child.name} (pid {child.process.pid})")

    def _relay(self, child: Supervised, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for raw in iter(process.stdout.readline, b""):
            self.output.line(child.name, raw.decode("utf-8", "replace").rstrip("\n"))

    def check(self, child: Supervised, now: float) -> None:
        if child.process is None:
            if child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self.log(f"restarting {child.name} (restart {child.restarts})")
                self.start(child)
            return
        returncode = child.process.poll()
        if returncode is None:
            return
        # Whatever it left behind in its process group (a Celery worker's pool children, say)
        # would otherwise live on as orphans next to its replacement.
        _signal_group(child.process, signal.SIGKILL)
        if child.reader is not None:
            child.reader.join(timeout=1)
        if now - child.started_at >= STABLE_AFTER_SECONDS:
            child.backoff = FIRST_BACKOFF_SECONDS
        delay = child.backoff
        child.backoff = min(child.backoff * 2, LONGEST_BACKOFF_SECONDS)
        child.process = None
        child.restart_at = now + delay
        self.log(f"{child.name} {describe_exit(returncode)}; restarting it in {delay:g} s")

    def run(self) -> int:
        for child in self.children:
            self.start(child)
        while not self.stopping.wait(0.2):
            now = time.monotonic()
            for child in self.children:
                self.check(child, now)
        self.stop_all()
        return 0

    def stop_all(self) -> None:
        running = [c for c in self.children if c.process and c.process.poll() is None]
        self.log(f"stopping {', '.join(c.name for c in running) or 'nothing'}")
        for child in running:
            assert child.process is not None  # `running` holds started children only
            _signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log(f"{child.name} did not stop within {self.grace:g} s: SIGKILL")
                _signal_group(child.process, signal.SIGKILL)
                child.process.wait()
        for child in running:
            if child.reader is not None:
                child.reader.join(timeout=1)
        self.log("stopped")


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-f", "--procfile", default="platform/Procfile", type=Path)
    parser.add_argument(
        "--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL"
    )
    parser.add_argument("--only", default="", help="comma-separated process names to run")
    args = parser.parse_args(argv)

    commands = read_procfile(args.procfile)
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(wanted) - set(commands))
        if unknown:
            parser.error(f"not in {args.procfile}: {', '.join(unknown)}")
        commands = {name: commands[name] for name in wanted}
    if not commands:
        parser.error(f"no processes in {args.procfile}")

    supervisor = Supervisor(commands, grace=args.grace, output=Output(list(commands)))

    def request_stop(signum, _frame) -> None:
        supervisor.log(f"received {signal.Signals(signum).name}")
        supervisor.stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
