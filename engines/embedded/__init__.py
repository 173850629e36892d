"""The embedded engine: a real vLLM server run next to the platform on the same host.

``prepare`` obtains a model and converts it once into the data directory; ``server`` builds the
vLLM command line from an engine profile (``platform/engines/<name>.json``) and runs it as a child
process. ``manage.py prepare_model`` / ``manage.py runengine`` and the integration tests use them.
vLLM itself lives in its own venv (``scripts/engine-venv.sh``) and is only ever talked to over HTTP.
"""
