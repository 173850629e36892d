"""Redis for tests: a private, throwaway redis-server a test may kill and restart, and the URL of
the shared one the limiter tests use (skipping them when there is none)."""

from __future__ import annotations

import signal
import subprocess

import pytest

from testsupport.ports import free_port, wait_for_port


class PrivateRedis:
    """A throwaway redis-server (no persistence) on a free port; the shared Redis the rest of the
    suite uses is never touched."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=5)


def quota_redis_url() -> str:
    """The limiter's Redis (``QUOTA_REDIS_URL``); the test is skipped when none is configured."""
    from django.conf import settings

    if not settings.QUOTA_REDIS_URL:
        pytest.skip("needs REDIS_URL")
    return settings.QUOTA_REDIS_URL
