"""Test doubles for the engine layer (importable without Django)."""
