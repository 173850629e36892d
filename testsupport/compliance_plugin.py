"""pytest plugin for the compliance suite: checks that every ``compliance`` mark names a known
feature ID, and with ``--compliance-report=PATH`` writes each marked test's outcome per ID (read
by ``scripts/compliance_report.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testsupport.compliance_ids import FEATURES, KNOWN_IDS


def pytest_addoption(parser):
    parser.addoption(
        "--compliance-report",
        default=None,
        help="write the outcome of every compliance-marked test, per feature ID, to this JSON file",
    )


def compliance_ids(item) -> list[str]:
    return [str(arg) for mark in item.iter_markers("compliance") for arg in mark.args]


def pytest_collection_modifyitems(config, items):
    unknown = sorted(
        {
            (item.nodeid, fid)
            for item in items
            for fid in compliance_ids(item)
            if fid not in KNOWN_IDS
        }
    )
    if unknown:
        raise pytest.UsageError(
            "compliance marks name unknown feature IDs: "
            + ", ".join(f"{nodeid} → {fid}" for nodeid, fid in unknown)
        )


def pytest_collection_finish(session):
    # After deselection (-m, -k): the tests this run will really execute.
    session.config._compliance = {
        item.nodeid: compliance_ids(item) for item in session.items if compliance_ids(item)
    }
    session.config._compliance_outcomes = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    recorded = getattr(item.config, "_compliance_outcomes", None)
    if recorded is None or not compliance_ids(item):
        return
    # One outcome per test: a failure in any phase wins; otherwise the call's (or the setup's
    # skip).
    previous = recorded.get(item.nodeid)
    if report.failed:
        recorded[item.nodeid] = "failed"
    elif report.skipped and previous is None:
        recorded[item.nodeid] = "skipped"
    elif report.when == "call" and report.passed and previous != "failed":
        recorded[item.nodeid] = "passed"


def pytest_sessionfinish(session, exitstatus):
    path = session.config.getoption("--compliance-report")
    if not path:
        return
    marks = getattr(session.config, "_compliance", {})
    outcomes = getattr(session.config, "_compliance_outcomes", {})
    results: dict[str, list[dict[str, str]]] = {fid: [] for fid in FEATURES}
    for nodeid, fids in marks.items():
        for fid in fids:
            # Endpoint IDs (testsupport.compliance_ids.ENDPOINTS) get their own entries.
            results.setdefault(fid, []).append(
                {"test": nodeid, "outcome": outcomes.get(nodeid, "not run")}
            )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"results": results}, indent=1))
