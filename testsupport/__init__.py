"""Helpers the test suites share (harnesses for live processes); imported by tests only."""
