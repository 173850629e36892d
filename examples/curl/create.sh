#!/usr/bin/env bash
# POST /v1/responses: one text turn, JSON answer.
set -euo pipefail
curl -sS --fail-with-body "$OPENAI_BASE_URL/responses" \
  -H "Authorization: Bearer $OPENAI_API_KEY" \
  -H "Content-Type: application/json" \
  -d "{\"model\": \"$MODEL\", \"input\": \"Say hello in one short sentence.\"}"
