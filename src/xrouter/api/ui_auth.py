"""Web UI sign-in, sign-out and the authorized-apps page."""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from xrouter.api.forms import FormError, form_values
from xrouter.auth.components import AuthComponents
from xrouter.auth.users import UserInfo
from xrouter.runtime import Runtime
from xrouter.ui.i18n import language_of, translator
from xrouter.ui.pages import error_page, render

router = APIRouter(include_in_schema=False)

LOGIN_PATH = "/ui/login"
APPS_PATH = "/ui/apps"
HOME_PATH = "/ui/keys"
# Where a sign-in may send the browser afterwards: only this server's own pages.
_SAFE_NEXT = re.compile(r"^/(oauth/authorize|auth|ui/)[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*$")


def auth_of(request: Request) -> AuthComponents:
    runtime: Runtime = request.app.state.runtime
    return runtime.auth


def safe_next(value: str | None) -> str:
    """``value`` if it is a path on this server the login may return to, else the keys page.
    Never an absolute or scheme-relative URL: the login must not be an open redirect."""
    # The pattern pins the first path segment, so "//host" and "/\\host" cannot match.
    if value and _SAFE_NEXT.match(value):
        return value
    return HOME_PATH


def login_redirect(request: Request) -> RedirectResponse:
    """Send the browser to sign in, then back to this request's page."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{LOGIN_PATH}?next={quote(here, safe='')}", status_code=303)


def csrf_refused(request: Request) -> Response:
    return error_page(request, translator(language_of(request))["csrf_failed"], status=403)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.get(LOGIN_PATH)
async def login_page(request: Request) -> Response:
    return _login_form(request, safe_next(request.query_params.get("next")), "", None, 200)


@router.post(LOGIN_PATH)
async def login(request: Request) -> Response:
    auth = auth_of(request)
    t = translator(language_of(request))
    try:
        form = await form_values(request)
    except FormError as error:
        return error_page(request, str(error))
    next_path = safe_next(form.get("next"))
    if not auth.ui_sessions.csrf_valid(request, form.get("csrf_token")):
        return csrf_refused(request)
    email, password = form.get("email", "")[:320], form.get("password", "")
    address = client_address(request)
    wait = await auth.login_limiter.retry_after(email, address)
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        message = t["login_throttled"].format(seconds=seconds)
        return _login_form(request, next_path, email, message, 429, {"retry-after": str(seconds)})
    user = await auth.users.authenticate(email, password) if email and password else None
    if user is None:
        await auth.login_limiter.failed(email, address)
        return _login_form(request, next_path, email, t["login_failed"], 401)
    await auth.login_limiter.succeeded(email)
    # A fresh session token on every sign-in: a token planted before login is worthless.
    token = await auth.ui_sessions.create(user.id)
    response = RedirectResponse(next_path, status_code=303)
    auth.ui_sessions.set_session(request, response, token)
    return response


def _login_form(
    request: Request,
    next_path: str,
    email: str,
    error: str | None,
    status: int,
    headers: dict[str, str] | None = None,
) -> Response:
    sessions = auth_of(request).ui_sessions
    browser_id, new = sessions.browser_id(request)
    context = {
        "csrf_token": sessions.csrf_token(request, browser_id),
        "next": next_path,
        "email": email,
        "error": error,
    }
    response = render(request, "login.html", context, status=status, headers=headers)
    if new:
        sessions.set_browser(request, response, browser_id)
    return response


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    sessions = auth_of(request).ui_sessions
    try:
        form = await form_values(request)
    except FormError as error:
        return error_page(request, str(error))
    if not sessions.csrf_valid(request, form.get("csrf_token")):
        return csrf_refused(request)
    await sessions.end(request)
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    sessions.clear_session(request, response)
    return response


@router.get(APPS_PATH)
async def apps_page(request: Request) -> Response:
    auth = auth_of(request)
    user = await auth.ui_sessions.user(request)
    if user is None:
        return login_redirect(request)
    notice = translator(language_of(request))["revoked_notice"]
    return await _apps(request, user, notice if request.query_params.get("revoked") else None)


async def _apps(request: Request, user: UserInfo, notice: str | None) -> Response:
    runtime: Runtime = request.app.state.runtime
    apps = await runtime.auth.grants.authorized_apps(user.id)
    # Only the keys apps got through the key flow; the keys page lists the rest.
    keys = [
        key
        for key in await runtime.key_service.list(user.id)
        if key.active and key.created_by_app is not None
    ]
    context: dict[str, Any] = {
        "user": user,
        "apps": apps,
        "keys": keys,
        "notice": notice,
        "csrf_token": runtime.auth.ui_sessions.csrf_token(request),
        # Times at the UI's offset, as on the key pages.
        "offset": runtime.settings.budget_utc_offset_hours,
    }
    return render(request, "apps.html", context)


@router.post("/ui/apps/revoke")
async def revoke_app(request: Request) -> Response:
    return await _revoke(request, "client_id")


@router.post("/ui/keys/revoke")
async def revoke_key(request: Request) -> Response:
    return await _revoke(request, "key_id")


async def _revoke(request: Request, field: str) -> Response:
    runtime: Runtime = request.app.state.runtime
    auth = runtime.auth
    user = await auth.ui_sessions.user(request)
    if user is None:
        return RedirectResponse(LOGIN_PATH, status_code=303)
    try:
        form = await form_values(request)
    except FormError as error:
        return error_page(request, str(error))
    if not auth.ui_sessions.csrf_valid(request, form.get("csrf_token")):
        return csrf_refused(request)
    target = form.get(field, "")
    if field == "client_id":
        await auth.grants.revoke_app(user.id, target)
    else:
        owned = {key.id for key in await runtime.key_service.list() if key.owner == user.id}
        if target not in owned:
            return error_page(request, "No such key.", status=404)
        await runtime.key_service.revoke(target)
    return RedirectResponse(f"{APPS_PATH}?revoked=1", status_code=303)
