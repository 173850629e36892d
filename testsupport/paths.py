"""Where the checkout is: servers and scripts the tests start run from the repository root."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
