"""quotas sits below the Responses layer: it admits and settles with plain values and returns
the limiter's state on the reservation; nothing in it imports ``responses`` (lazily either)."""

from __future__ import annotations

import ast
from pathlib import Path

QUOTAS = Path(__file__).resolve().parents[1]
UPPER_APPS = ("responses", "conversations", "prompts", "api", "console", "config")


def _imported_modules(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_quotas_imports_no_app_above_it():
    sources = [p for p in QUOTAS.rglob("*.py") if "tests" not in p.relative_to(QUOTAS).parts]
    assert len(sources) > 10  # the walk found the package
    upward = [
        f"{path.relative_to(QUOTAS.parent)} imports {module}"
        for path in sources
        for module in _imported_modules(path)
        if module.split(".")[0] in UPPER_APPS
    ]
    assert upward == []
