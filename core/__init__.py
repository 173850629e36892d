"""The bottom layer: primitives every app uses and that import no app.

Database access from async code (``core.db``), the error classes and their OpenAI envelope
(``core.errors``), request-scoped logging (``core.logging``), the shared Redis cache
(``core.cache``), safe JSON bodies (``core.json_body``) and in-process metrics (``core.metrics``).
"""
