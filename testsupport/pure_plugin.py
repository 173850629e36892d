"""The "pure" selection for ``make check``: ``pytest -p testsupport.pure_plugin -m pure``.

A pure test needs no database, no engine, no server and no other process: it runs in well under
a second and exercises parsing, validation, the stream builder and encoder, the limiter's
arithmetic, settings, the import contract. What it is not is decided here, from what the test
asks for, so a new test falls into the right set without being marked:

* a ``django_db`` mark, or a database fixture (pytest-django refuses the database to any test
  without one, so a test that gets past this cannot reach it);
* the ``integration`` mark (the real engine);
* a fixture that starts a server (``live_daphne``, a fake vLLM: ``upstream`` is the name
  ``fake_vllm_fixture`` is given by convention);
* a module that starts processes, itself (subprocess, multiprocessing) or through the helpers
  of ``testsupport`` that do (embedded, live_server, redis_servers, worker): all its tests are
  left out, to be safe.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

_DATABASE_FIXTURES = frozenset(
    {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback"}
)
_SERVER_FIXTURES = frozenset(
    {"live_daphne", "live_server", "fake_vllm", "fake_vllm_factory", "upstream"}
)
_STARTS_PROCESSES = re.compile(
    r"subprocess|Popen|multiprocessing|os\.fork|sys\.executable|DaphneProcess"
    r"|testsupport\.(?:embedded|live_server|redis_servers|worker)\b"
)


@functools.cache
def _starts_processes(path: Path) -> bool:
    return bool(_STARTS_PROCESSES.search(path.read_text()))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pure: needs no database, engine, server or process")


def _is_pure(item: pytest.Item) -> bool:
    if item.get_closest_marker("django_db") or item.get_closest_marker("integration"):
        return False
    fixtures = set(getattr(item, "fixturenames", ()))
    if fixtures & (_DATABASE_FIXTURES | _SERVER_FIXTURES):
        return False
    if "browser" in item.path.parts:
        return False  # a real browser
    return not _starts_processes(item.path)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _is_pure(item):
            item.add_marker(pytest.mark.pure)
