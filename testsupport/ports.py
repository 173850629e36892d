"""Local TCP ports for servers a test starts: a free one to bind, and a wait until one listens."""

from __future__ import annotations

import socket

from testsupport.waiting import wait_until


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(port: int, *, within: float = 10.0) -> None:
    """Return once something accepts connections on ``port``."""
    wait_until(lambda: listening(port), within=within, every=0.05, what=f"a server on {port}")
