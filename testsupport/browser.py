"""What the real-browser journeys share: where Chromium is, where screenshots go, the password
the journeys log in with, and numbered screenshots of each journey's steps."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from testsupport.paths import REPO_ROOT

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("BROWSER_SCREENSHOTS", REPO_ROOT / "artifacts" / "browser"))
PASSWORD = "browser-journey-password-7"  # noqa: S105 - a test user's, never a real one


class Shots:
    """Numbered screenshots of one journey: ``<journey>-<nn>-<step>.png``."""

    def __init__(self, journey: str) -> None:
        self.journey = journey
        self.count = 0
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for old in SCREENSHOTS.glob(f"{journey}-*.png"):
            old.unlink()

    def __call__(self, page, step: str) -> Path:
        self.count += 1
        name = re.sub(r"[^a-z0-9]+", "-", step.lower()).strip("-")
        path = SCREENSHOTS / f"{self.journey}-{self.count:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


def clean_screenshots() -> None:  # pragma: no cover - a helper for people
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
