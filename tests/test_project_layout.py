"""Guards on how the project is laid out and deployed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_import_platform_is_the_standard_library_from_the_repo_root():
    # A fresh interpreter: in-process checks are fooled by whatever sys.modules already holds.
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import platform, uuid; print(platform.__file__); platform.system()",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert not out.startswith(str(REPO_ROOT)), out


def test_platform_folder_holds_no_python():
    assert not list((REPO_ROOT / "platform").rglob("*.py"))
    assert not (REPO_ROOT / "platform" / "__init__.py").exists()


def test_check_deploy_is_clean_under_production_settings():
    env = {
        **os.environ,
        "DATABASE_URL": os.environ.get(
            "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"
        ),
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
        "SECRET_KEY": "a-long-random-production-secret-" + "x7Gq2LpZ9rT4vW8yB3nK6mD1sF5hJ0cV",
        "API_KEY_PEPPER": "production-pepper-value",
        "ALLOWED_HOSTS": "api.example.com",
        "DEBUG": "false",
    }
    env.pop("SECURE_SSL_REDIRECT", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_refuses_to_start_without_secrets():
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "API_KEY_PEPPER")}
    env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/postgres"
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_bad_setting_values_fail_loudly():
    env = {**os.environ, "MAX_REQUEST_BODY_BYTES": "lots"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "MAX_REQUEST_BODY_BYTES='lots' is not an integer" in result.stderr


def test_every_middleware_is_async_capable():
    from django.conf import settings
    from django.utils.module_loading import import_string

    for path in settings.MIDDLEWARE:
        middleware = import_string(path)
        assert getattr(middleware, "async_capable", True), (
            f"{path} is sync-only: it would serialize every request through one thread"
        )
