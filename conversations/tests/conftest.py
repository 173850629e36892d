from responses.tests.conftest import engine, scripted_model  # noqa: F401 - shared fixtures
