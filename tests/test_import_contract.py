"""The one import direction between the apps (docs/architecture.md, "Layers").

    core  ←  tenants, engines  ←  quotas  ←  responses, conversations, prompts  ←  api, console, config

A module may import its own app, any app of a lower layer and the other apps of its own layer;
never an app of a higher layer. One exception: inside an app, the edge modules (views, urls,
openapi, websocket, consumers, admin, management commands) may import ``api``, the HTTP edge's
shared parts (authentication, permissions, error rendering). Services, selectors, models,
``requests/`` and ``streaming/`` may not.

Every import counts, wherever it is written: at the top of a module, inside a function (a lazy
import is still a dependency), under ``if TYPE_CHECKING:``, relative or absolute. Migrations and
tests are left out (a test may import whatever it exercises); so are the packages that belong to
no layer (``scripts``, ``testsupport``, ``bench``, ``examples``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from testsupport.paths import REPO_ROOT

LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"core"}),
    frozenset({"tenants", "engines"}),
    frozenset({"quotas"}),
    frozenset({"responses", "conversations", "prompts"}),
    frozenset({"api", "console", "config"}),
)
RANK = {app: rank for rank, layer in enumerate(LAYERS) for app in layer}

# The first name under an app that makes a module an edge module (``responses/views.py``,
# ``quotas/management/commands/usage.py``): these may import ``api``.
EDGE_MODULES = frozenset(
    {"views", "urls", "openapi", "websocket", "consumers", "admin", "management"}
)
EDGE_APP = "api"


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    importer: str
    imported: str

    @property
    def importer_app(self) -> str:
        return self.importer.split(".")[0]

    @property
    def imported_app(self) -> str:
        return self.imported.split(".")[0]

    def __str__(self) -> str:
        return (
            f"{self.path}:{self.line}: {self.importer} ({self.importer_app}, layer "
            f"{RANK[self.importer_app]}) imports {self.imported} ({self.imported_app}, layer "
            f"{RANK[self.imported_app]})"
        )


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, *, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module ``source`` imports, as (line, absolute dotted name), including the imports
    inside functions and classes and the relative ones."""
    found: list[tuple[int, str]] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from app import module` names a module too: check the deepest name.
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return found


def allowed(importer: str, imported: str) -> bool:
    importer_app, imported_app = importer.split(".")[0], imported.split(".")[0]
    if imported_app not in RANK or imported_app == importer_app:
        return True  # a third-party or standard module, or the app itself
    if RANK[imported_app] <= RANK[importer_app]:
        return True
    parts = importer.split(".")
    return imported_app == EDGE_APP and len(parts) > 1 and parts[1] in EDGE_MODULES


def violations_in(source: str, *, module: str, path: str, is_package: bool) -> list[Violation]:
    return [
        Violation(path, line, module, imported)
        for line, imported in imported_modules(source, module=module, is_package=is_package)
        if not allowed(module, imported)
    ]


def layered_modules() -> list[Path]:
    paths = []
    for app in RANK:
        for path in sorted((REPO_ROOT / app).rglob("*.py")):
            relative = path.relative_to(REPO_ROOT).parts
            if "migrations" in relative or "tests" in relative:
                continue
            paths.append(path)
    return paths


def all_violations() -> list[Violation]:
    found = []
    for path in layered_modules():
        found += violations_in(
            path.read_text(),
            module=module_name(path),
            path=str(path.relative_to(REPO_ROOT)),
            is_package=path.name == "__init__.py",
        )
    return found


def _quotas_to_responses(violation: Violation) -> bool:
    return violation.importer_app == "quotas" and violation.imported_app == "responses"


def test_no_app_imports_a_higher_layer():
    # The quotas → responses imports are the known failure below, tracked on their own.
    found = [v for v in all_violations() if not _quotas_to_responses(v)]
    assert not found, "imports against the layers:\n" + "\n".join(map(str, found))


def test_quotas_imports_nothing_of_responses():
    found = [v for v in all_violations() if _quotas_to_responses(v)]
    assert not found, "quotas imports responses:\n" + "\n".join(map(str, found))


def test_every_app_has_a_layer():
    # A new top-level app must be placed in LAYERS (or this test's exclusions) to be checked.
    apps = {
        path.parent.name
        for path in REPO_ROOT.glob("*/apps.py")
        if (path.parent / "__init__.py").exists()
    }
    assert apps <= set(RANK), f"apps without a layer: {sorted(apps - set(RANK))}"
    assert (REPO_ROOT / "core" / "__init__.py").exists()


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        # Upward, at the top of a module.
        (
            "core.cache",
            "from tenants.models import Organization\n",
            ["tenants.models.Organization"],
        ),
        # Upward, lazily inside a function.
        ("engines.registry", "def f():\n    import responses.models\n", ["responses.models"]),
        # Upward, relatively (quotas/services/x.py: `from ...responses import models`).
        ("quotas.services.x", "from ...responses import models\n", ["responses.models"]),
        # Under TYPE_CHECKING.
        (
            "tenants.principal",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from quotas import models\n",
            ["quotas.models"],
        ),
        # A service may not import the edge; a view may.
        ("responses.services.create", "from api.errors import x\n", ["api.errors.x"]),
        ("responses.views", "from api.errors import x\n", []),
        ("quotas.management.commands.usage", "import api.permissions\n", []),
        # But an edge module may import only api upward, not another higher app.
        (
            "quotas.admin",
            "from responses.models import StoredResponse\n",
            ["responses.models.StoredResponse"],
        ),
        # Downward, sideways, within the app, and third-party imports are fine.
        ("responses.services.create", "from quotas import selectors\n", []),
        ("tenants.models", "from engines.models import Deployment\n", []),
        ("core.errors", "from . import logging\nimport django.http\n", []),
    ],
)
def test_the_checker_sees_every_kind_of_import(module, source, expected):
    found = violations_in(source, module=module, path="x.py", is_package=False)
    assert [v.imported for v in found] == expected
