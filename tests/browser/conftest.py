"""Real-browser tests: Playwright (the Python package) drives Chromium from Debian's packages
(``/usr/bin/chromium``; Playwright never downloads a browser here) against a daphne of our own
and a fake vLLM. Screenshots of every step go to ``BROWSER_SCREENSHOTS`` (default
``artifacts/browser/``, kept by CI)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testsupport.browser import CHROMIUM, Shots
from testsupport.fake_vllm import FakeBehavior
from testsupport.fixtures import fake_vllm_fixture
from testsupport.live_server import DaphneProcess


@pytest.fixture(scope="module")
def browser():
    """Module-scoped on purpose: while Playwright's sync API is open, this thread has a running
    event loop (and the async-safety switch below is on), which later async tests must not
    inherit."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("REQUIRE_BROWSER"):
            pytest.fail(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, which makes Django
    # refuse ORM calls here; the tests' own ORM work is plain sync code (Django's documented
    # way for Playwright tests).
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            yield from _launch(playwright)
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def _launch(playwright):
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    chromium = playwright.chromium.launch(
        executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
    )
    yield chromium
    chromium.close()


upstream = fake_vllm_fixture(
    by_model={
        "up-ok": FakeBehavior(text="Hello from the browser journey.", prompt_tokens=9),
        "up-broken": FakeBehavior(status=500, error_message="the GPU caught fire"),
    }
)


@pytest.fixture(scope="module")
def server(django_db_setup):
    # The server keeps Django's async-safety check (empty = off, see the browser fixture).
    served = DaphneProcess(
        {"QUOTA_LIMITS_CACHE_SECONDS": "0", "DJANGO_ALLOW_ASYNC_UNSAFE": ""}
    ).start()
    yield served
    served.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    # Generous: CI machines are small and shared; a wait ends as soon as its condition holds.
    page.set_default_timeout(45_000)
    yield page
    context.close()


@pytest.fixture
def shots(request) -> Shots:
    return Shots(request.node.name.removeprefix("test_"))
