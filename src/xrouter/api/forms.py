"""Reading OAuth parameters from query strings and form bodies.

RFC 6749 §3.1 and §3.2: a parameter must not appear more than once, and one sent without a
value counts as omitted. Bodies are read with a size limit; no multipart parser is involved.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl

from starlette.requests import Request

MAX_FORM_BYTES = 64 * 1024
MAX_FIELDS = 64
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"


class FormError(ValueError):
    """The parameters cannot be read: repeated, too many, too large or not a form."""


def single_values(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Parameters as a dict; ``FormError`` if one is repeated. Empty values are dropped."""
    values: dict[str, str] = {}
    seen: set[str] = set()
    for count, (name, value) in enumerate(items):
        if count >= MAX_FIELDS:
            raise FormError("Too many parameters.")
        if name in seen:
            raise FormError(f"The parameter '{name[:40]}' is repeated.")
        seen.add(name)
        if value != "":
            values[name] = value
    return values


def query_values(request: Request) -> dict[str, str]:
    return single_values(request.query_params.multi_items())


async def form_values(request: Request) -> dict[str, str]:
    """The ``application/x-www-form-urlencoded`` body as single values."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != FORM_MEDIA_TYPE:
        raise FormError(f"The body must be {FORM_MEDIA_TYPE}.")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise FormError("The body is too large.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            raise FormError("The body is too large.")
        chunks.append(chunk)
    try:
        text = b"".join(chunks).decode("utf-8")
        items = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise FormError("The body is not a valid form.") from None
    return single_values(items)
