"""What the test suites share, in one place; imported by tests, conftest files and the
benchmark, never by the platform's own code (``tests/test_test_layout.py`` checks both ways).

Doubles at the engine seam:

* ``fake_vllm`` — a fake vLLM HTTP server (also ``python -m testsupport.fake_vllm``);
* ``scripted_engine`` — a deterministic in-process engine behind the ``Engine`` interface;
* ``conformance`` — checks of our events and Responses against the ``openai`` SDK's types.

Harnesses for live processes and their data:

* ``live_server`` — daphne serving the platform against the test database;
* ``worker`` — a Celery worker with beat;
* ``redis_servers`` — a private redis-server to kill and restart, the limiter's Redis URL;
* ``embedded`` — the embedded default of ``make run``, supervised as it runs there;
* ``fixtures`` — fixture factories (the fake vLLM ``upstream``, the scripted engine and model);
* ``factories`` — factory_boy factories for tenants;
* ``sdk_clients`` — the ``openai`` SDK wired to Django in-process;
* ``sse``, ``stored_responses``, ``stream_builder`` — reading streams, waiting on stored
  responses, golden builder runs;
* ``waiting`` — waits on a condition instead of fixed sleeps; ``ports``, ``paths``;
* ``browser``, ``error_codes``, ``compliance_ids``, ``compliance_plugin`` — what single suites
  (browser journeys, documentation checks, the compliance report) read.
"""
