"""Encrypted reasoning (``include: ["reasoning.encrypted_content"]``).

A ``store=false`` client cannot chain with ``previous_response_id``, so it keeps the reasoning
itself and sends it back on its next turn, as an opaque blob only this platform can read:

* the blob is a Fernet token (AES-128-CBC + HMAC-SHA256, with its creation time inside) made
  with :class:`cryptography.fernet.MultiFernet` over ``REASONING_ENCRYPTION_KEYS``, newest key
  first: new blobs use the first key, any listed key opens a blob, so keys rotate without
  breaking blobs already handed out (``docs/encrypted-reasoning.md``);
* Fernet has no associated data, so the organization is bound *inside* the plaintext and checked
  on the way back: another organization's blob is refused, never used;
* a blob is valid for ``REASONING_ENCRYPTION_TTL_SECONDS``; tampered, expired, foreign blobs and
  blobs under a key no longer listed are all a 400 naming the item. There is no plaintext or
  base64 fallback: without a key the include value itself is refused.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from core.errors import InvalidRequest

_VERSION = 1


def reasoning_keys_configured() -> bool:
    return bool(settings.REASONING_ENCRYPTION_KEYS)


def _fernet() -> MultiFernet:
    keys = settings.REASONING_ENCRYPTION_KEYS
    if not keys:
        raise InvalidRequest(
            "'reasoning.encrypted_content' is not available: this deployment has no reasoning "
            "encryption key configured (REASONING_ENCRYPTION_KEYS).",
            param="include",
            code="unsupported_value",
        )
    return MultiFernet([Fernet(key) for key in keys])


def reasoning_include_check() -> None:
    """The include value is refused outright, with a clear 400, when no key is configured."""
    _fernet()


def reasoning_encrypt(*, organization_id: str, item_id: str, text: str, summary: list[str]) -> str:
    """The ``encrypted_content`` of one reasoning item, bound to ``organization_id``."""
    payload = {
        "v": _VERSION,
        "org": organization_id,
        "id": item_id,
        "text": text,
        "summary": summary,
    }
    return _fernet().encrypt(json.dumps(payload, ensure_ascii=False).encode()).decode("ascii")


def reasoning_decrypt(*, organization_id: str, token: Any, param: str) -> dict[str, Any]:
    """The reasoning inside a blob sent back as input: ``{"text", "summary"}``. Anything but a
    valid, unexpired blob of this organization is a 400 naming ``param``."""
    if not isinstance(token, str) or not token:
        raise InvalidRequest(
            f"Invalid '{param}': expected the encrypted_content string this API returned.",
            param=param,
            code="invalid_encrypted_content",
        )
    try:
        raw = _fernet().decrypt(
            token.encode("ascii"), ttl=settings.REASONING_ENCRYPTION_TTL_SECONDS
        )
        payload = json.loads(raw)
    except (InvalidToken, UnicodeEncodeError, ValueError):
        # One message for tampered, expired and unknown-key blobs: telling them apart would only
        # help someone probing the keys.
        raise InvalidRequest(
            f"Invalid '{param}': the encrypted reasoning could not be decrypted. It was altered, "
            f"it is older than {settings.REASONING_ENCRYPTION_TTL_SECONDS} seconds, or the key "
            "that made it was retired. Send the conversation without this reasoning item.",
            param=param,
            code="invalid_encrypted_content",
        ) from None
    if not isinstance(payload, dict) or payload.get("org") != organization_id:
        raise InvalidRequest(
            f"Invalid '{param}': this encrypted reasoning belongs to another organization.",
            param=param,
            code="invalid_encrypted_content",
        )
    return {"text": str(payload.get("text", "")), "summary": list(payload.get("summary") or [])}


def reasoning_key_generate() -> str:
    return Fernet.generate_key().decode("ascii")
