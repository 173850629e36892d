"""Content the platform hands to a client encrypted and takes back later (compaction items):
Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``) with rotating keys, bound to the
organization.

* Keys: ``ENCRYPTED_CONTENT_KEYS`` (comma-separated Fernet keys); the first encrypts, every one
  decrypts, so a key is rotated by putting the new one first and dropping the old one once its
  blobs have aged out. Unset: one key derived from ``SECRET_KEY``.
* Binding: each configured key is turned into a per-organization key (HKDF-SHA256 with the
  organization's public id), and the plaintext names the organization and the purpose; another
  organization's blob, or one made for another purpose, fails to open. There is no plaintext or
  base64 fallback.
"""

from __future__ import annotations

import base64
import functools
import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class SealedContentInvalid(Exception):
    """The blob was not made by this platform for this organization and purpose."""


def _base_keys() -> tuple[bytes, ...]:
    configured = tuple(settings.ENCRYPTED_CONTENT_KEYS)
    if configured:
        return tuple(base64.urlsafe_b64decode(key) for key in configured)
    return (_derive(settings.SECRET_KEY.encode(), info=b"encrypted-content-base-key"),)


def _derive(material: bytes, *, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(material)


@functools.lru_cache(maxsize=256)
def _fernet(organization_id: str, keys: tuple[bytes, ...]) -> MultiFernet:
    return MultiFernet(
        [
            Fernet(base64.urlsafe_b64encode(_derive(key, info=b"org:" + organization_id.encode())))
            for key in keys
        ]
    )


def seal(*, organization_id: str, purpose: str, text: str) -> str:
    payload = json.dumps({"org": organization_id, "purpose": purpose, "text": text})
    return _fernet(organization_id, _base_keys()).encrypt(payload.encode()).decode("ascii")


def unseal(*, organization_id: str, purpose: str, token: str) -> str:
    try:
        payload = json.loads(_fernet(organization_id, _base_keys()).decrypt(token.encode()))
    except (InvalidToken, ValueError, UnicodeError) as exc:
        raise SealedContentInvalid("the content cannot be decrypted") from exc
    if payload.get("org") != organization_id or payload.get("purpose") != purpose:
        raise SealedContentInvalid("the content was made for something else")
    return payload["text"]
