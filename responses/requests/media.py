"""Image and file inputs: ``input_image`` and ``input_file`` content parts.

Parsing (this module, pure) checks what can be checked without knowing the model:

* ``input_image`` — ``image_url`` is a ``data:image/{png,jpeg,gif,webp};base64,…`` URL (at most
  ``INPUT_IMAGE_MAX_BYTES`` decoded) or an ``http(s)`` URL whose host is not a private, loopback,
  link-local or otherwise internal address. The platform never fetches it; the engine does, so
  an internal address would let a client make the engine fetch from inside the network.
  Hostnames are resolved by the service (:func:`image_hosts`) before anything is generated.
* ``input_file`` — base64 ``file_data`` (optionally as a data URL) with a ``filename``; a PDF
  (its text is extracted here, page by page) or UTF-8 text, at most ``INPUT_FILE_MAX_BYTES``
  decoded. The file becomes text for the engine, so any model can read it.
* ``file_id`` and ``file_url`` are refused: this platform has no Files API and fetches nothing.

Whether the *model* takes images is the service's check (``ServedModel.accepts_images``): a
text-only model gets a 400 naming the part. Canonical parts keep what the client sent (the
stored input items show it); :func:`engine_part` makes the chat content part vLLM reads.
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from responses.requests import checks as c

IMAGE_DETAILS = ("auto", "low", "high", "original")
IMAGE_MEDIA_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
_IMAGE_KEYS = frozenset({"type", "image_url", "file_id", "detail"})
_FILE_KEYS = frozenset({"type", "file_data", "filename", "file_id", "file_url", "detail"})
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)(;[\w-]+=[\w.-]+)*;base64,(.*)$", re.DOTALL)
_INTERNAL_SUFFIXES = (".localhost", ".local", ".internal", ".intranet", ".lan", ".home.arpa")
_MAX_PDF_PAGES = 200


def parse_input_image(part: dict[str, Any], *, param: str) -> dict[str, Any]:
    c.reject_unknown_keys(part, _IMAGE_KEYS, prefix=param)
    if part.get("file_id") is not None:
        c.fail(
            f"{param}: 'file_id' is not supported (this platform has no Files API). Send the "
            "image as 'image_url': an https URL or a base64 data URL.",
            param=c.child(param, "file_id"),
            code="unsupported_value",
        )
    url_param = c.child(param, "image_url")
    url = c.required_string(part, "image_url", prefix=param, min_length=1, max_length=None)
    detail = c.optional_enum(part, "detail", prefix=param, allowed=IMAGE_DETAILS) or "auto"
    if url.startswith("data:"):
        media_type, data = _data_url(url, param=url_param)
        if media_type not in IMAGE_MEDIA_TYPES:
            c.fail(
                f"Invalid '{url_param}': images must be one of {c.quoted_list(IMAGE_MEDIA_TYPES)}, "
                f"not {media_type!r}.",
                param=url_param,
                code="invalid_value",
            )
        _check_size(data, limit=settings.INPUT_IMAGE_MAX_BYTES, param=url_param, what="image")
    else:
        url_host_check(url, param=url_param)
    return {"type": "input_image", "image_url": url, "detail": detail}


def parse_input_file(part: dict[str, Any], *, param: str) -> dict[str, Any]:
    c.reject_unknown_keys(part, _FILE_KEYS, prefix=param)
    for key, why in (
        ("file_id", "this platform has no Files API"),
        ("file_url", "this platform fetches no files"),
    ):
        if part.get(key) is not None:
            c.fail(
                f"{param}: '{key}' is not supported ({why}). Send the file's bytes as "
                "base64 'file_data' with its 'filename'.",
                param=c.child(param, key),
                code="unsupported_value",
            )
    data_param = c.child(param, "file_data")
    raw = c.required_string(part, "file_data", prefix=param, min_length=1, max_length=None)
    filename = c.required_string(part, "filename", prefix=param, min_length=1, max_length=255)
    data = _data_url(raw, param=data_param)[1] if raw.startswith("data:") else _b64(raw, data_param)
    _check_size(data, limit=settings.INPUT_FILE_MAX_BYTES, param=data_param, what="file")
    file_text(data, filename=filename, param=param)  # refused now, not at generation
    return {"type": "input_file", "filename": filename, "file_data": raw}


def url_host_check(url: str, *, param: str) -> str:
    """The URL's host, when it is an ``http(s)`` URL that does not name an internal host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        c.fail(
            f"Invalid '{param}': expected an http(s) URL or a base64 data URL.",
            param=param,
            code="invalid_value",
        )
    host = parts.hostname.rstrip(".").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if (address is not None and not address_is_public(address)) or (
        address is None
        and (host == "localhost" or host.endswith(_INTERNAL_SUFFIXES) or "." not in host)
    ):
        refuse_internal(param)
    return host


def address_is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return address.is_global and not address.is_multicast


def refuse_internal(param: str) -> None:
    c.fail(
        f"Invalid '{param}': the URL points into a private network. Image URLs must be public "
        "(or send the image as a base64 data URL).",
        param=param,
        code="invalid_value",
    )


def image_urls(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(param, url)`` of every http(s) image of canonical input items, for the service's DNS
    check (indices are the client's)."""
    out = []
    for i, item in enumerate(items):
        for j, part in enumerate(
            item.get("content") or [] if item.get("type") == "message" else []
        ):
            if part.get("type") == "input_image" and not part["image_url"].startswith("data:"):
                out.append((f"input[{i}].content[{j}].image_url", part["image_url"]))
    return out


def image_parts(items: list[dict[str, Any]]) -> list[str]:
    """Params of every image part (the text-only check names the first)."""
    return [
        f"input[{i}].content[{j}]"
        for i, item in enumerate(items)
        if item.get("type") == "message"
        for j, part in enumerate(item.get("content") or [])
        if part.get("type") == "input_image"
    ]


def engine_part(part: dict[str, Any]) -> dict[str, Any]:
    """The chat content part vLLM reads for a canonical image or file part."""
    if part["type"] == "input_image":
        return {"type": "image_url", "image_url": {"url": part["image_url"]}}
    raw = part["file_data"]
    data = (
        _data_url(raw, param="file_data")[1] if raw.startswith("data:") else _b64(raw, "file_data")
    )
    text = file_text(data, filename=part["filename"], param="file_data")
    return {"type": "text", "text": f"[File: {part['filename']}]\n{text}"}


def file_text(data: bytes, *, filename: str, param: str) -> str:
    """A PDF's extracted text or a text file's contents; anything else is a 400."""
    if data.startswith(b"%PDF-"):
        return _pdf_text(data, param=param)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        c.fail(
            f"{param}: '{filename}' is neither a PDF nor UTF-8 text; only those file types are "
            "supported.",
            param=c.child(param, "file_data"),
            code="unsupported_value",
        )


def _pdf_text(data: bytes, *, param: str) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if len(reader.pages) > _MAX_PDF_PAGES:
            c.fail(
                f"{param}: the PDF has {len(reader.pages)} pages; at most {_MAX_PDF_PAGES} are "
                "supported.",
                param=c.child(param, "file_data"),
                code="invalid_value",
            )
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        c.fail(
            f"{param}: the PDF could not be read ({type(exc).__name__}).",
            param=c.child(param, "file_data"),
            code="invalid_value",
        )
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    if not text:
        c.fail(
            f"{param}: the PDF has no extractable text (a scan?); send its pages as images to a "
            "model that accepts images.",
            param=c.child(param, "file_data"),
            code="invalid_value",
        )
    return text


def _data_url(url: str, *, param: str) -> tuple[str, bytes]:
    match = _DATA_URL.match(url)
    if match is None:
        c.fail(
            f"Invalid '{param}': expected a base64 data URL (data:<media type>;base64,<data>).",
            param=param,
            code="invalid_value",
        )
    return match.group(1).lower(), _b64(match.group(3), param)


def _b64(value: str, param: str) -> bytes:
    # Checked before decoding: a body at the request limit must not be decoded only to be
    # refused, and the decoded size is 3/4 of the encoded one.
    if len(value) * 3 // 4 > max(settings.INPUT_IMAGE_MAX_BYTES, settings.INPUT_FILE_MAX_BYTES):
        c.fail(f"'{param}' is too large.", param=param, code="string_above_max_length")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        c.fail(f"Invalid '{param}': not valid base64.", param=param, code="invalid_value")


def _check_size(data: bytes, *, limit: int, param: str, what: str) -> None:
    if len(data) > limit:
        c.fail(
            f"'{param}': the {what} is {len(data)} bytes; at most {limit} are accepted.",
            param=param,
            code="string_above_max_length",
        )
