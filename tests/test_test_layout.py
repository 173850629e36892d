"""How test code is laid out: what tests share lives in ``testsupport``; no module imports a test
module or a conftest (pytest gives fixtures to the tests that need them, and a test module
imported by another runs its setup twice and hides where a helper lives); and the platform's
own code never imports ``testsupport``. Imports are read with ``ast``, not matched as text."""

from __future__ import annotations

import ast
import os
from pathlib import Path

from testsupport.paths import REPO_ROOT

# Code outside the tests that may use the test doubles: the support package itself and the
# benchmark (it starts fake vLLM replicas).
TOOLING_DIRS = ("testsupport", "bench")
# Reads the report the compliance suite writes, with the feature IDs the suite uses.
TOOLING_FILES = ("scripts/compliance_report.py",)


def python_files(root: Path) -> list[Path]:
    """Every ``.py`` file of the checkout, relative to it (virtualenvs and dot folders aside)."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(
            name for name in subfolders if not name.startswith(".") and name != "__pycache__"
        )
        found += [Path(folder, name).relative_to(root) for name in files if name.endswith(".py")]
    return sorted(found)


def is_test_module(relative: Path) -> bool:
    return relative.name == "conftest.py" or "tests" in relative.parts[:-1]


def may_import_testsupport(relative: Path) -> bool:
    return (
        is_test_module(relative)
        or relative.parts[0] in TOOLING_DIRS
        or relative.as_posix() in TOOLING_FILES
    )


def module_file(root: Path, module: str) -> Path | None:
    """The checkout's file for a dotted module name, or None (the standard library, packages
    from the virtualenv, names that are not modules)."""
    parts = module.split(".")
    for candidate in (
        root.joinpath(*parts).with_suffix(".py"),
        root.joinpath(*parts, "__init__.py"),
    ):
        if candidate.is_file():
            return candidate.relative_to(root)
    return None


def imports(relative: Path, tree: ast.AST) -> list[tuple[int, str, list[str]]]:
    """Every import, anywhere in a module (function bodies too): its line, the module it names
    and the dotted names it may load, most specific first (``from a import b`` may load the
    module ``a.b``, or take the name ``b`` from ``a``)."""
    package = list(relative.parent.parts)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, [alias.name]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [f"{module}.{alias.name}" for alias in node.names]
            found.append((node.lineno, module, [*names, module]))
    return sorted(found)


def layout_problems(root: Path) -> list[str]:
    problems = []
    for relative in python_files(root):
        tree = ast.parse((root / relative).read_text(), filename=str(relative))
        for line, module, names in imports(relative, tree):
            where = f"{relative.as_posix()}:{line}"
            for name in names:
                target = module_file(root, name)
                if name.rsplit(".", 1)[-1] == "conftest" or (
                    target is not None and target != relative and is_test_module(target)
                ):
                    problems.append(f"{where} imports the test module {name}")
                    break
            if module.split(".")[0] == "testsupport" and not may_import_testsupport(relative):
                problems.append(f"{where} imports {module}: testsupport is for tests only")
    return problems


def test_no_module_imports_a_test_module_and_the_platform_never_imports_testsupport():
    assert layout_problems(REPO_ROOT) == []


def _write(root: Path, files: dict[str, str]) -> None:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)


def test_the_check_finds_each_kind_of_bad_import(tmp_path):
    _write(
        tmp_path,
        {
            "conftest.py": "HELPER = 1\n",
            "testsupport/__init__.py": "",
            "testsupport/sse.py": "def parse_sse(raw): ...\n",
            "shop/__init__.py": "",
            "shop/views.py": "def view(): from testsupport.sse import parse_sse\n",
            "shop/services.py": "import testsupport\n",
            "shop/tests/__init__.py": "",
            "shop/tests/conftest.py": "from shop.tests.test_a import helper\n",
            "shop/tests/test_a.py": "def helper(): ...\n",
            "shop/tests/test_b.py": "from conftest import HELPER\nfrom .test_a import helper\n",
            "shop/tests/test_c.py": "from shop.tests import test_a\n",
            "shop/tests/test_d.py": "import shop.tests.conftest\n",
            "bench/run.py": "from testsupport.sse import parse_sse\n",
        },
    )
    assert layout_problems(tmp_path) == [
        "shop/services.py:1 imports testsupport: testsupport is for tests only",
        "shop/tests/conftest.py:1 imports the test module shop.tests.test_a",
        "shop/tests/test_b.py:1 imports the test module conftest",
        "shop/tests/test_b.py:2 imports the test module shop.tests.test_a",
        "shop/tests/test_c.py:1 imports the test module shop.tests.test_a",
        "shop/tests/test_d.py:1 imports the test module shop.tests.conftest",
        "shop/views.py:1 imports testsupport.sse: testsupport is for tests only",
    ]


def test_tests_may_use_testsupport_and_the_platform_its_own_modules(tmp_path):
    _write(
        tmp_path,
        {
            "conftest.py": "from testsupport.sse import parse_sse\n",
            "testsupport/__init__.py": "",
            "testsupport/sse.py": "from shop.services import total\n",
            "shop/__init__.py": "",
            "shop/services.py": "def total(): ...\n",
            "shop/views.py": "from shop.services import total\nfrom . import services\n",
            "shop/tests/__init__.py": "",
            "shop/tests/test_a.py": "from shop.services import total\nimport testsupport.sse\n",
        },
    )
    assert layout_problems(tmp_path) == []
