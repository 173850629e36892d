"""D5: every error code the platform's code can emit is explained in docs/troubleshooting.md."""

from __future__ import annotations

import pytest

from testsupport.error_codes import emitted_codes
from testsupport.paths import REPO_ROOT


@pytest.mark.compliance("D5")
def test_every_error_code_in_the_code_is_in_the_guide():
    guide = (REPO_ROOT / "docs" / "troubleshooting.md").read_text()
    codes = emitted_codes()
    # Sanity: the scan sees the codes of each layer, so it cannot pass by finding nothing.
    assert {
        "invalid_api_key",
        "model_not_found",
        "rate_limit_exceeded",
        "engine_unavailable",
        "duplicate_tool_output",
        "decimal_above_max_value",
    } <= set(codes)
    missing = {code: where for code, where in codes.items() if f"`{code}`" not in guide}
    assert not missing, f"error codes missing from docs/troubleshooting.md: {missing}"
