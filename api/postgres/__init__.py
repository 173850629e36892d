"""Django's PostgreSQL backend with a cheaper pool check (``api/postgres/base.py``)."""
