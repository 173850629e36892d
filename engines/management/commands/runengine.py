"""``manage.py runengine``: run the embedded vLLM server in the foreground until told to stop."""

from __future__ import annotations

import shlex
import signal
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from engines.embedded import launch, prepare
from engines.embedded.server import EngineStartError


class Command(BaseCommand):
    help = (
        "Start vLLM's OpenAI-compatible server for a model with the flags of its engine profile "
        "(platform/engines/<model>.json), wait until it is healthy, and stop it cleanly on "
        "SIGINT/SIGTERM. Exits non-zero if vLLM dies."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--model",
            default=launch.DEFAULT_PROFILE,
            help="Engine profile to run (default: %(default)s).",
        )
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument(
            "--port",
            type=int,
            default=settings.EMBEDDED_ENGINE_PORT,
            help="Port (default: EMBEDDED_ENGINE_PORT, %(default)s).",
        )
        parser.add_argument(
            "--device",
            choices=["auto", "cpu", "gpu"],
            default="auto",
            help="Profile variant; auto = the one whose vLLM package the engine venv has.",
        )
        parser.add_argument(
            "--ready-timeout", type=float, default=300.0, help="Seconds to wait for /health."
        )
        parser.add_argument(
            "--stop-timeout",
            type=float,
            default=20.0,
            help="Seconds vLLM gets to exit after SIGTERM before its process group is killed.",
        )

    def handle(self, *args, **options) -> None:
        try:
            self._run(**options)
        except (EngineStartError, prepare.PrepareError) as exc:
            raise CommandError(str(exc)) from exc

    def _log(self, message: str) -> None:
        self.stdout.write(f"runengine: {message}")
        self.stdout.flush()

    def _run(
        self,
        *,
        model: str,
        host: str,
        port: int,
        device: str,
        ready_timeout: float,
        stop_timeout: float,
        **options,
    ) -> None:
        profile = launch.load_profile(model, device)
        self._log(f"profile {model} ({profile.device}, {profile.package})")
        prepared = launch.prepare_model(profile.model, log=self._log)
        self._log(f"model {prepared.path} verified")

        server = launch.build_server(profile, host=host, port=port)
        stop_requested = threading.Event()

        def on_signal(signum: int, frame: object) -> None:
            if stop_requested.is_set():
                self._log(f"{signal.Signals(signum).name} again: killing vLLM")
                server.kill()
                return
            stop_requested.set()
            self._log(f"{signal.Signals(signum).name}: stopping vLLM (up to {stop_timeout:.0f} s)")
            server.terminate()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

        self._log(f"starting {shlex.join(server.command)}")
        server.start()
        try:
            try:
                seconds = server.wait_ready(ready_timeout)
            except EngineStartError:
                if not stop_requested.is_set():
                    raise
            else:
                self._log(
                    self.style.SUCCESS(
                        f"ready in {seconds:.1f} s: {server.base_url} serves "
                        f"{profile.served_model_name}"
                    )
                )
            # Sleep until vLLM exits, killing its group if a requested stop takes too long.
            while server.poll() is None:
                if server.overdue(stop_timeout):
                    self._log(f"vLLM still running {stop_timeout:.0f} s after SIGTERM: killing it")
                    server.kill()
                time.sleep(0.25)
        finally:
            code = server.stop(stop_timeout)
        if not stop_requested.is_set():
            raise CommandError(
                f"vLLM exited unexpectedly (status {code})",
                returncode=code if code and code > 0 else 1,
            )
        self._log(f"vLLM stopped (status {code})")
