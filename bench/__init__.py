"""Benchmarks, run by hand (``python -m bench.streams``); not part of the test suite."""
