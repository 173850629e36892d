#!/usr/bin/env bash
# POST /v1/responses with "stream": true: server-sent events (event: <type> / data: <json>),
# ending with response.completed. -N turns curl's output buffering off.
set -euo pipefail
curl -sS -N --fail-with-body "$OPENAI_BASE_URL/responses" \
  -H "Authorization: Bearer $OPENAI_API_KEY" \
  -H "Content-Type: application/json" \
  -d "{\"model\": \"$MODEL\", \"input\": \"Count to five.\", \"stream\": true}"
