"""Settings added for compatibility features, loaded in a fresh interpreter (settings are read
once per process): embedded secrets gain a reasoning key without losing the others, and bad
values stop the process naming the variable."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from testsupport.paths import REPO_ROOT

_LOAD = (
    "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'; django.setup(); "
    "from django.conf import settings; "
    "print(settings.SECRET_KEY, settings.REASONING_ENCRYPTION_KEYS, settings.RESPONSES_DIALECT)"
)


def _run(data_dir, **env):
    base = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "DATABASE_URL",
            "REDIS_URL",
            "SECRET_KEY",
            "API_KEY_PEPPER",
            "REASONING_ENCRYPTION_KEYS",
        )
    }
    return subprocess.run(
        [sys.executable, "-c", _LOAD],
        cwd=REPO_ROOT,
        env=base | {"PLATFORM_DATA_DIR": str(data_dir)} | env,
        capture_output=True,
        text=True,
    )


def test_an_old_embedded_data_dir_gains_a_reasoning_key_and_keeps_its_secrets(tmp_path):
    (tmp_path / "secrets.json").write_text(json.dumps({"SECRET_KEY": "s", "API_KEY_PEPPER": "p"}))
    first = _run(tmp_path)
    assert first.returncode == 0, first.stderr
    stored = json.loads((tmp_path / "secrets.json").read_text())
    assert stored["SECRET_KEY"] == "s" and stored["API_KEY_PEPPER"] == "p"
    assert stored["REASONING_ENCRYPTION_KEYS"] in first.stdout
    assert _run(tmp_path).stdout == first.stdout  # generated once, then kept


def test_bad_compatibility_settings_stop_the_process(tmp_path):
    bad_key = _run(tmp_path, REASONING_ENCRYPTION_KEYS="not-a-fernet-key")
    assert bad_key.returncode != 0 and "REASONING_ENCRYPTION_KEYS" in bad_key.stderr
    bad_dialect = _run(tmp_path, RESPONSES_DIALECT="klingon")
    assert bad_dialect.returncode != 0 and "RESPONSES_DIALECT" in bad_dialect.stderr
