"""Rendering UI pages: Jinja2 with autoescaping, the language of the request, and the headers
every page carries (no caching, no framing, no referrer: authorization pages hold one-time
values in their URLs and forms)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse

from xrouter.ui.i18n import LANGUAGE_COOKIE, LANGUAGES, language_of, translator

UI_DIR = Path(__file__).resolve().parent
STATIC_DIR = UI_DIR / "static"
STATIC_PATH = "/ui/static"

PAGE_HEADERS = {
    "cache-control": "no-store",
    "pragma": "no-cache",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; "
        "connect-src 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
}

_environment = Environment(
    loader=FileSystemLoader(UI_DIR / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def when(moment: datetime, utc_offset_hours: int = 0) -> str:
    """``2025-03-01 15:30`` at the UI's UTC offset."""
    zone = timezone(timedelta(hours=utc_offset_hours))
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


_environment.globals["when"] = when


def render(
    connection: HTTPConnection,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """A page in the request's language, with the security headers above."""
    language = language_of(connection)
    values = {
        "lang": language,
        "t": translator(language),
        "static": STATIC_PATH,
        "path": connection.url.path,
        "query_without_lang": urlencode(
            [(k, v) for k, v in connection.query_params.multi_items() if k != "lang"]
        ),
        "user": None,
        **(context or {}),
    }
    body = _environment.get_template(template).render(values)
    response = HTMLResponse(body, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})
    if connection.query_params.get("lang") in LANGUAGES:
        response.set_cookie(
            LANGUAGE_COOKIE, language, max_age=365 * 86400, httponly=True, samesite="lax"
        )
    return response


def error_page(
    connection: HTTPConnection, message: str, *, status: int = 400, error: str | None = None
) -> HTMLResponse:
    """The error page shown instead of redirecting to a URI that cannot be trusted."""
    return render(connection, "error.html", {"message": message, "error": error}, status=status)
