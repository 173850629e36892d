"""T1: every feature ID this platform serves is covered by at least one test marked with it, and
docs/compatibility.md's generated table still matches the marks (the result column aside)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from testsupport.compliance_ids import ENDPOINTS, FEATURES, KNOWN_IDS, NOT_YET

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_ROOTS = (
    "api",
    "conversations",
    "console",
    "engines",
    "prompts",
    "quotas",
    "responses",
    "tenants",
    "tests",
)


def _mark_ids(decorator: ast.expr) -> list[str]:
    """``pytest.mark.compliance("C1", "C3")`` → ``["C1", "C3"]``."""
    if not isinstance(decorator, ast.Call):
        return []
    func = decorator.func
    if not (isinstance(func, ast.Attribute) and func.attr == "compliance"):
        return []
    return [arg.value for arg in decorator.args if isinstance(arg, ast.Constant)]


def marked_tests() -> dict[str, list[str]]:
    """Feature ID → ``path::test`` of every test carrying its mark (read from the source, so
    this runs in a second, without collecting the suite)."""
    found: dict[str, list[str]] = {}
    for root in TEST_ROOTS:
        for path in sorted((REPO_ROOT / root).rglob("test_*.py")):
            tree = ast.parse(path.read_text())
            module_ids = [
                fid
                for node in tree.body
                if isinstance(node, ast.Assign)
                and any(getattr(target, "id", None) == "pytestmark" for target in node.targets)
                for mark in ast.walk(node.value)
                for fid in _mark_ids(mark)
            ]
            for node in ast.walk(tree):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                if not node.name.startswith("test_"):
                    continue
                ids = [fid for d in node.decorator_list for fid in _mark_ids(d)] + module_ids
                for fid in ids:
                    nodeid = f"{path.relative_to(REPO_ROOT)}::{node.name}"
                    found.setdefault(fid, []).append(nodeid)
    return found


@pytest.mark.compliance("T1")
def test_the_registry_has_the_37_ids():
    assert len(FEATURES) == 37
    assert list(FEATURES)[:4] == ["C1", "C2", "C3", "C4"] and list(FEATURES)[-1] == "T1"


@pytest.mark.compliance("T1")
def test_every_served_id_has_a_test_and_no_unserved_one_pretends_to():
    marks = marked_tests()
    assert set(marks) <= KNOWN_IDS, f"unknown IDs: {set(marks) - KNOWN_IDS}"
    assert not [eid for eid in ENDPOINTS if eid not in marks], "an endpoint ID has no test"
    missing = [fid for fid, f in FEATURES.items() if f.status != NOT_YET and fid not in marks]
    assert not missing, f"served but untested: {missing}"
    pretending = [fid for fid, f in FEATURES.items() if f.status == NOT_YET and fid in marks]
    assert not pretending, (
        f"{pretending} are marked 'not supported yet' in testsupport/compliance_ids.py but have "
        "tests now: update their status"
    )


@pytest.mark.compliance("D3", "T1")
def test_the_generated_matrix_matches_the_marks():
    text = (REPO_ROOT / "docs" / "compatibility.md").read_text()
    block = text.split("<!-- compliance:start -->", 1)[1].split("<!-- compliance:end -->", 1)[0]
    rows = {}
    for line in block.splitlines():
        cells = [
            cell.strip().replace("\\|", "|")
            for cell in re.split(r"(?<!\\)\|", line.strip().removeprefix("|").removesuffix("|"))
        ]
        if len(cells) == 5 and cells[0] in FEATURES:
            rows[cells[0]] = cells
    assert list(rows) == list(FEATURES), "run `make compliance` to regenerate the table"
    marks = marked_tests()
    for fid, (_, title, status, tests, _result) in rows.items():
        feature = FEATURES[fid]
        expected_status = f"{feature.status}: {feature.note}" if feature.note else feature.status
        assert (title, status) == (feature.title, expected_status), fid
        listed = set(re.findall(r"`([^`]+)`", tests))
        expected = {
            f"{nodeid.split('::')[0].rsplit('/', 1)[-1].removesuffix('.py')}::"
            f"{nodeid.split('::')[1]}"
            for nodeid in marks.get(fid, [])
        }
        # Parametrized tests appear once per case in the report: compare the functions.
        assert {name.split("[")[0] for name in listed} == expected, (
            f"{fid}: the table lists other tests than the marks; run `make compliance`"
        )


@pytest.mark.compliance("D3")
def test_the_matrix_lists_every_parameter_include_value_tool_type_and_event():
    from responses.openapi import STREAM_EVENTS
    from responses.requests.tools import UNSUPPORTED_TOOL_TYPES
    from responses.requests.validation import CREATE_PARAMS, INCLUDABLE

    text = (REPO_ROOT / "docs" / "compatibility.md").read_text()
    expected = {
        "parameter": CREATE_PARAMS,
        "include value": set(INCLUDABLE),
        "tool type": {"function", *UNSUPPORTED_TOOL_TYPES},
        "event": set(STREAM_EVENTS),
    }
    missing = {
        kind: sorted(name for name in names if f"`{name}`" not in text)
        for kind, names in expected.items()
    }
    assert not any(missing.values()), f"missing from docs/compatibility.md: {missing}"
