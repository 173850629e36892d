"""Which error codes the platform's code can emit, found by reading its source (``ast``): the
documentation tests check each one is explained."""

from __future__ import annotations

import ast

from testsupport.paths import REPO_ROOT

APPS = ("core", "api", "tenants", "engines", "quotas", "responses", "conversations", "prompts")


def _strings(node: ast.AST) -> set[str]:
    """The string values an expression can take: a literal, both branches of ``"a" if x else
    "b"``, the operands of ``x or "b"`` (not the arguments of calls: ``event.get("code")``)."""
    if isinstance(node, ast.Constant):
        return {node.value} if isinstance(node.value, str) else set()
    if isinstance(node, ast.IfExp):
        return _strings(node.body) | _strings(node.orelse)
    if isinstance(node, ast.BoolOp):
        return set().union(*(_strings(value) for value in node.values))
    return set()


def emitted_codes() -> dict[str, str]:
    """code → where it is first set: ``code="…"`` keywords, ``code = "…"`` class attributes and
    ``{"code": "…"}`` literals, in every production module of the apps."""
    codes: dict[str, str] = {}
    for app in APPS:
        for path in sorted((REPO_ROOT / app).rglob("*.py")):
            relative = path.relative_to(REPO_ROOT)
            # Tests, fixtures and the OpenAPI description (which documents codes, emits none).
            if {"tests", "testing", "migrations", "openapi", "openapi.py"} & set(relative.parts):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                found: set[str] = set()
                if isinstance(node, ast.keyword) and node.arg == "code":
                    found = _strings(node.value)
                elif isinstance(node, ast.ClassDef):
                    for statement in node.body:
                        if isinstance(statement, ast.Assign) and any(
                            getattr(t, "id", None) == "code" for t in statement.targets
                        ):
                            found |= _strings(statement.value)
                elif isinstance(node, ast.Dict):
                    for key, value in zip(node.keys, node.values, strict=True):
                        if isinstance(key, ast.Constant) and key.value == "code" and value:
                            found |= _strings(value)
                for code in found:
                    codes.setdefault(code, f"{relative}:{getattr(node, 'lineno', '?')}")
    return codes
