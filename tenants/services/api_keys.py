"""API keys: issuing, verifying, revoking.

Format: ``sk-rp-<43 base62 chars of 32 random bytes><6 base62 chars of CRC32>``. The ``sk-``
prefix makes leaked keys easy to find, the checksum lets us (and secret scanners) reject random
strings without touching the database. Only ``prefix`` (first 12 characters), ``last_four`` and
``digest = HMAC-SHA256(API_KEY_PEPPER, key)`` are stored: a database leak alone cannot be turned
into a working key, and no password hasher is needed because the secret has 256 bits of entropy.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
import zlib
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from core.versions import RowSnapshot, VersionedCache, version_get
from tenants.ids import BASE62
from tenants.models import VERSION, ApiKey, Organization, Project

logger = logging.getLogger(__name__)

KEY_MARKER = "sk-rp-"
# Admin keys carry a marker of their own so that a leaked one is recognisable as the more
# dangerous kind (like OpenAI's ``sk-admin-``); the kind itself is decided by the stored row.
ADMIN_KEY_MARKER = "sk-adm-"
_SECRET_LENGTH = 43  # base62 digits needed for 32 bytes
_CHECKSUM_LENGTH = 6
PREFIX_LENGTH = 12
KEY_PATTERN = re.compile(
    rf"^(?:{re.escape(KEY_MARKER)}|{re.escape(ADMIN_KEY_MARKER)})"
    rf"[0-9A-Za-z]{{{_SECRET_LENGTH}}}[0-9A-Za-z]{{{_CHECKSUM_LENGTH}}}$"
)

ENDPOINT_GROUPS = ("models", "responses")
PERMISSION_LEVELS = ("none", "read", "write")


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, remainder = divmod(number, 62)
        digits.append(BASE62[remainder])
    return "".join(reversed(digits)).rjust(width, "0")


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), _CHECKSUM_LENGTH)


def generate_secret(*, marker: str = KEY_MARKER) -> str:
    body = _base62(int.from_bytes(secrets.token_bytes(32), "big"), _SECRET_LENGTH)
    return f"{marker}{body}{_checksum(body)}"


def is_well_formed(secret: str) -> bool:
    """Shape and checksum only: no database access, no timing on stored data."""
    if not KEY_PATTERN.match(secret):
        return False
    marker = ADMIN_KEY_MARKER if secret.startswith(ADMIN_KEY_MARKER) else KEY_MARKER
    body = secret[len(marker) : -_CHECKSUM_LENGTH]
    return hmac.compare_digest(secret[-_CHECKSUM_LENGTH:], _checksum(body))


def digest_of(secret: str) -> str:
    return hmac.new(settings.API_KEY_PEPPER.encode(), secret.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    secret: str
    """The plaintext key. It exists only in this object: show it once, never store it."""


def validate_permissions(permissions: dict[str, str]) -> dict[str, str]:
    cleaned: dict[str, str] = {}
    for group, level in permissions.items():
        if group not in ENDPOINT_GROUPS:
            raise ValueError(
                f"Unknown endpoint group {group!r}; known: {', '.join(ENDPOINT_GROUPS)}"
            )
        if level not in PERMISSION_LEVELS:
            raise ValueError(f"Permission for {group!r} must be one of none/read/write")
        cleaned[group] = level
    return cleaned


@transaction.atomic
def api_key_issue(
    *,
    organization: Organization,
    name: str,
    project: Project | None = None,
    created_by=None,
    scope: str = ApiKey.Scope.ALL,
    permissions: dict[str, str] | None = None,
    expires_at: datetime | None = None,
    kind: str = ApiKey.Kind.PROJECT,
) -> IssuedKey:
    if project is not None and project.organization_id != organization.pk:
        raise ValueError("The project belongs to another organization.")
    if scope not in ApiKey.Scope.values:
        raise ValueError(f"Unknown scope {scope!r}")
    if kind not in ApiKey.Kind.values:
        raise ValueError(f"Unknown key kind {kind!r}")
    if kind == ApiKey.Kind.ADMIN and project is not None:
        raise ValueError("Admin keys belong to the organization, not to a project.")
    secret = generate_secret(marker=ADMIN_KEY_MARKER if kind == ApiKey.Kind.ADMIN else KEY_MARKER)
    api_key = ApiKey.objects.create(
        organization=organization,
        project=project,
        name=name,
        kind=kind,
        created_by=created_by,
        scope=scope,
        permissions=validate_permissions(permissions or {}),
        prefix=secret[:PREFIX_LENGTH],
        last_four=secret[-4:],
        digest=digest_of(secret),
        expires_at=expires_at,
    )
    return IssuedKey(api_key=api_key, secret=secret)


def api_key_revoke(*, api_key: ApiKey) -> bool:
    """Revoke a key; effective on the very next request, in every process (the write bumps the
    version that cached keys are checked against: tenants.models.VERSION)."""
    updated = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    api_key.refresh_from_db(fields=["revoked_at"])
    return updated == 1


def api_key_find_active(*, secret: str) -> ApiKey | None:
    """The active key matching ``secret``, or None (unknown, revoked, expired or malformed)."""
    api_key = api_key_lookup(secret=secret, version=version_get(VERSION))
    if api_key is None or api_key.status_at(timezone.now()) != "active":
        return None
    return api_key


# --- the per-process key cache -----------------------------------------------------------------
#
# Authentication runs on every API request; reading the key, its organization and its project
# from the database each time was a query (and a thread hand-off) ahead of everything else.
# Each process keeps what it read, by digest, with the token of tenants.models.VERSION it read
# *before* the query; an entry is used only while the token is still the same. Every ORM write
# of a key, organization or project bumps the token (core.versions), so nothing here can outlive
# a revocation, a scope change or an organization's new limits: the next request, in any
# process, reads the row again. Status (revoked, expired) is decided per request from the row,
# so an expiry needs no write at all. VERSIONED_CACHE_SECONDS bounds an entry's age all the same,
# for a bump that could not reach Redis; 0 turns the cache off.


@dataclass(frozen=True, slots=True)
class _Record:
    key: RowSnapshot
    organization: RowSnapshot
    project: RowSnapshot | None


_records = VersionedCache()


def api_key_from_cache(*, digest: str, version: int | None) -> ApiKey | None:
    """The key (any status) with its organization and project, if this process holds it under
    the current ``version``; None means "ask the database" (:func:`api_key_lookup`)."""
    record = _records.get(digest, version=version)
    if record is None:
        return None
    api_key = record.key.instance()
    api_key.organization = record.organization.instance()
    api_key.project = record.project.instance() if record.project is not None else None
    return api_key


def api_key_lookup(*, secret: str, version: int | None) -> ApiKey | None:
    """The key matching ``secret`` (any status: the caller decides), with its organization and
    project: from this process's cache while ``version`` (tenants.models.VERSION, read before
    calling) is current, else from the database, which then refills the cache."""
    if not is_well_formed(secret):
        return None
    expected = digest_of(secret)
    cached = api_key_from_cache(digest=expected, version=version)
    if cached is not None:
        return cached
    candidates = ApiKey.objects.select_related("organization", "project").filter(
        prefix=secret[:PREFIX_LENGTH]
    )
    for candidate in candidates:
        if hmac.compare_digest(candidate.digest, expected):
            project = candidate.project
            record = _Record(
                key=RowSnapshot.of(candidate),
                organization=RowSnapshot.of(candidate.organization),
                project=RowSnapshot.of(project) if project is not None else None,
            )
            _records.put(expected, record, version=version)
            return candidate
    return None


def api_key_mark_used_due(*, api_key: ApiKey) -> bool:
    """Whether :func:`api_key_mark_used` has anything to do for this key in this process now
    (async callers skip the hand-off to a database thread when it has not)."""
    return _marked_here.get((api_key.pk, api_key.digest), 0.0) <= time.monotonic()


def api_key_mark_used(*, api_key: ApiKey) -> None:
    """Record last use at most once per interval per key.

    A database write on every request would make the hottest path write-bound; a cache ``add``
    (atomic "set if absent" with a TTL) decides which request in each interval does the write.
    ``last_used_at`` is therefore accurate to API_KEY_LAST_USED_INTERVAL_SECONDS, on purpose.
    """
    interval = settings.API_KEY_LAST_USED_INTERVAL_SECONDS
    # This process already took part in the current interval: no cache round trip either.
    memo_key = (api_key.pk, api_key.digest)
    now = time.monotonic()
    if _marked_here.get(memo_key, 0.0) > now:
        return
    if len(_marked_here) > _MEMO_LIMIT:
        _marked_here.clear()
    _marked_here[memo_key] = now + interval
    try:
        first_in_interval = cache.add(f"apikey-last-used:{api_key.pk}", 1, timeout=interval)
    except Exception:  # noqa: BLE001 - the cache (Redis) is down: last use is advisory, the key is not
        logger.warning("cache unavailable; last use of key %s not recorded", api_key.pk)
        return
    if first_in_interval:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=timezone.now())


_marked_here: dict[tuple[int, str], float] = {}
_MEMO_LIMIT = 100_000


def key_allows(*, api_key: ApiKey, group: str, write: bool) -> bool:
    if api_key.scope == ApiKey.Scope.ALL:
        return True
    if api_key.scope == ApiKey.Scope.READ_ONLY:
        return not write
    level = api_key.permissions.get(group, "none")
    return level == "write" or (level == "read" and not write)
