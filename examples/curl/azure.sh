#!/usr/bin/env bash
# The Azure v1 form: the same API under /openai/v1/, authenticated with the api-key header.
set -euo pipefail
ROOT="${OPENAI_BASE_URL%/v1}"
curl -sS --fail-with-body "$ROOT/openai/v1/responses" \
  -H "api-key: $OPENAI_API_KEY" \
  -H "Content-Type: application/json" \
  -d "{\"model\": \"$MODEL\", \"input\": \"Say hello.\"}"
