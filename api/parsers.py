from __future__ import annotations

from typing import Any

from rest_framework.parsers import JSONParser

from core.json_body import parse_json_body


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser with the platform's depth limit and error envelope."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        return parse_json_body(stream.read() if stream is not None else b"")
