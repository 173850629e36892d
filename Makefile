# The two commands of the README: `make run` (the whole platform, embedded default) and
# `make test` (the whole suite). Both install whatever is missing first. `make check` is the
# quick one for while you work (docs/contributing.md): lint, format, types, the import contract
# and the tests that need no database, engine, server or process — under a minute.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

# The test suite talks to real PostgreSQL and Redis (both run on these machines; .ci/run starts
# them if they are down). Override any of these from the environment.
TEST_ENV := \
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres} \
	REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/15} \
	SECRET_KEY=$${SECRET_KEY:-test-only-secret-key-not-for-production-0123456789abcdef} \
	API_KEY_PEPPER=$${API_KEY_PEPPER:-test-only-pepper} \
	ALLOWED_HOSTS=$${ALLOWED_HOSTS:-*} \
	SECURE_SSL_REDIRECT=false \
	PLATFORM_DATA_DIR=$${PLATFORM_DATA_DIR:-$(CURDIR)/.data}

.PHONY: run test check install engine lint typecheck contract pure compliance

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# vLLM (CPU build) in its own virtualenv; the embedded model is converted once by prepare_model.
engine: install
	bash scripts/engine-venv.sh

run: install engine
	$(PY) manage.py prepare_model
	$(PY) manage.py migrate --noinput
	$(PY) manage.py bootstrap
	PORT=$${PORT:-8000} $(PY) scripts/supervise.py -f platform/Procfile

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The Django plugin loads config.settings, which reads the environment: hence TEST_ENV.
typecheck: install
	$(TEST_ENV) $(VENV)/bin/mypy

# The layers' one import direction (docs/architecture.md).
contract: install
	$(TEST_ENV) $(PY) -m pytest -q tests/test_import_contract.py

# Tests that need no database, engine, server or process (testsupport/pure_plugin.py decides); the
# import contract is one of them.
pure: install
	$(TEST_ENV) $(PY) -m pytest -q -p testsupport.pure_plugin -m pure $(PYTEST_ARGS)

check: lint typecheck pure

test: install engine lint typecheck contract
	$(TEST_ENV) $(PY) manage.py prepare_model
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

# The compliance suite: every test marked @pytest.mark.compliance("ID"), then the table
# feature ID → tests → pass/fail; the same table is written into docs/compatibility.md.
# The table's test list is written first (from collection), so the run checks an up-to-date one.
COMPLIANCE_REPORT := .data/compliance.json
compliance: install
	$(TEST_ENV) $(PY) -m pytest -m compliance -q --collect-only --compliance-report=$(COMPLIANCE_REPORT) >/dev/null
	$(PY) scripts/compliance_report.py $(COMPLIANCE_REPORT) --write docs/compatibility.md >/dev/null || true
	$(TEST_ENV) $(PY) -m pytest -m compliance -q --compliance-report=$(COMPLIANCE_REPORT) $(PYTEST_ARGS); \
	status=$$?; \
	$(PY) scripts/compliance_report.py $(COMPLIANCE_REPORT) --write docs/compatibility.md || status=1; \
	exit $$status
