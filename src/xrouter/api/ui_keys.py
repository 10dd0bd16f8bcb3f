"""The web UI for keys: the list (search, status, last used), creating a key (its secret shown
once), a key's page (usage charts, settings, revoking with confirmation), and the admin view of
users and keys. Server-rendered forms that work without JavaScript; the charts and the copy
button are the only scripts (``ui/static/xrouter.js``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from xrouter.api.caller import Caller, runtime_of
from xrouter.api.forms import FormError, form_values
from xrouter.api.key_access import (
    KEY_STATUSES,
    change_key,
    create_key,
    find_key,
    revoke_key,
    visible_keys,
)
from xrouter.api.ui_auth import LOGIN_PATH, csrf_refused, login_redirect
from xrouter.errors import GatewayError
from xrouter.keys.cache import INFERENCE, KEY_KINDS
from xrouter.keys.service import KeyInfo
from xrouter.ui.forms import form_values_of, read_key_form
from xrouter.ui.i18n import language_of, translator
from xrouter.ui.pages import error_page, render

router = APIRouter(include_in_schema=False)

KEYS_PATH = "/ui/keys"


async def _caller(request: Request) -> Caller | None:
    user = await runtime_of(request).auth.ui_sessions.user(request)
    return Caller(user.id, user.is_admin, email=user.email) if user is not None else None


async def _viewer(request: Request) -> Caller | Response:
    """The signed-in caller of a page, or the redirect that sends them to sign in first."""
    caller = await _caller(request)
    return caller if caller is not None else login_redirect(request)


async def _submission(request: Request) -> tuple[Caller, dict[str, str]] | Response:
    """The signed-in caller and the form they posted, or the page that refuses it (no session,
    an unreadable form, a missing or wrong CSRF token)."""
    caller = await _caller(request)
    if caller is None:
        return RedirectResponse(LOGIN_PATH, status_code=303)
    try:
        form = await form_values(request)
    except FormError as error:
        return error_page(request, str(error))
    if not runtime_of(request).auth.ui_sessions.csrf_valid(request, form.get("csrf_token")):
        return csrf_refused(request)
    return caller, form


async def _visible_key(request: Request, caller: Caller, key_id: str) -> KeyInfo | Response:
    """The key, if the caller may see it; the error page (404) otherwise."""
    try:
        return await find_key(runtime_of(request), caller, key_id)
    except GatewayError as error:
        return error_page(request, error.message, status=error.status)


async def _viewed_key(request: Request, key_id: str) -> tuple[Caller, KeyInfo] | Response:
    """The signed-in caller and the key of a key's page, or the page that refuses it (the
    sign-in redirect, or the error page when the caller may not see the key)."""
    caller = await _viewer(request)
    if isinstance(caller, Response):
        return caller
    info = await _visible_key(request, caller, key_id)
    if isinstance(info, Response):
        return info
    return caller, info


def _base_context(request: Request, caller: Caller) -> dict[str, Any]:
    runtime = runtime_of(request)
    return {
        "user": caller,
        "csrf_token": runtime.auth.ui_sessions.csrf_token(request),
        "offset": runtime.settings.budget_utc_offset_hours,
    }


def _filters(request: Request) -> tuple[str, str]:
    """The search text and status filter of a key list."""
    return request.query_params.get("q", "")[:200], request.query_params.get("status", "")


def _listing(
    request: Request, keys: list[KeyInfo], query: str, status_filter: str
) -> dict[str, Any]:
    """What a key table and its filters show: newest first, with this month's spend."""
    spend = runtime_of(request).spend
    return {
        "keys": list(reversed(keys)),
        "spent": {info.id: spend.spent(info.id) for info in keys},
        "query": query,
        "status_filter": status_filter,
        "statuses": KEY_STATUSES,
    }


@router.get("/ui")
async def home() -> RedirectResponse:
    return RedirectResponse(KEYS_PATH, status_code=303)


@router.get(KEYS_PATH)
async def keys_page(request: Request) -> Response:
    caller = await _viewer(request)
    if isinstance(caller, Response):
        return caller
    return await _keys_page(request, caller, {}, None, 200)


async def _keys_page(
    request: Request, caller: Caller, form: dict[str, str], error: str | None, status: int
) -> Response:
    query, status_filter = _filters(request)
    mine = await visible_keys(
        runtime_of(request),
        Caller(caller.user_id, False),
        query=query,
        status=status_filter if status_filter in KEY_STATUSES else None,
    )
    t = translator(language_of(request))
    notice = {"revoked": t["key_revoked_notice"]}.get(request.query_params.get("done", ""))
    context = {
        **_base_context(request, caller),
        **_listing(request, mine, query, status_filter),
        "kinds": KEY_KINDS,
        "form": form,
        "error": error,
        "notice": notice,
    }
    return render(request, "keys.html", context, status=status)


@router.post(KEYS_PATH)
async def create(request: Request) -> Response:
    submitted = await _submission(request)
    if isinstance(submitted, Response):
        return submitted
    caller, form = submitted
    runtime = runtime_of(request)
    kind = form.get("kind", INFERENCE)
    try:
        values = read_key_form(form, runtime.settings.budget_utc_offset_hours)
        created = await create_key(
            runtime,
            caller,
            kind=kind if kind in KEY_KINDS else INFERENCE,
            **values.create_arguments(),
        )
    except GatewayError as error:
        return await _keys_page(request, caller, form, error.message, error.status)
    context = {**_base_context(request, caller), "created": created.info, "secret": created.key}
    return render(request, "key_created.html", context, status=201)


@router.get(KEYS_PATH + "/{key_id}")
async def key_page(request: Request, key_id: str) -> Response:
    viewed = await _viewed_key(request, key_id)
    if isinstance(viewed, Response):
        return viewed
    caller, info = viewed
    saved = translator(language_of(request))["saved_notice"]
    notice = saved if request.query_params.get("done") == "saved" else None
    return _key_page(request, caller, info, None, None, notice, 200)


def _key_page(
    request: Request,
    caller: Caller,
    info: KeyInfo,
    form: dict[str, str] | None,
    error: str | None,
    notice: str | None,
    status: int,
) -> Response:
    runtime = runtime_of(request)
    offset = runtime.settings.budget_utc_offset_hours
    context = {
        **_base_context(request, caller),
        "key": info,
        "form": form if form is not None else form_values_of(info, offset),
        "spent": runtime.spend.spent(info.id),
        "resets_at": runtime.spend.calendar.local(runtime.spend.resets_at()),
        "error": error,
        "notice": notice,
    }
    return render(request, "key.html", context, status=status)


@router.post(KEYS_PATH + "/{key_id}")
async def update(request: Request, key_id: str) -> Response:
    submitted = await _submission(request)
    if isinstance(submitted, Response):
        return submitted
    caller, form = submitted
    info = await _visible_key(request, caller, key_id)
    if isinstance(info, Response):
        return info
    runtime = runtime_of(request)
    try:
        values = read_key_form(form, runtime.settings.budget_utc_offset_hours)
        disabled = form.get("disabled") == "on"
        await change_key(runtime, caller, key_id, values.changes(info, disabled))
    except GatewayError as error:
        return _key_page(request, caller, info, form, error.message, None, error.status)
    return RedirectResponse(f"{KEYS_PATH}/{key_id}?done=saved", status_code=303)


@router.get(KEYS_PATH + "/{key_id}/revoke")
async def confirm_revoke(request: Request, key_id: str) -> Response:
    viewed = await _viewed_key(request, key_id)
    if isinstance(viewed, Response):
        return viewed
    caller, info = viewed
    context = {**_base_context(request, caller), "key": info}
    return render(request, "key_revoke.html", context)


@router.post(KEYS_PATH + "/{key_id}/revoke")
async def revoke(request: Request, key_id: str) -> Response:
    submitted = await _submission(request)
    if isinstance(submitted, Response):
        return submitted
    caller, _ = submitted
    try:
        await revoke_key(runtime_of(request), caller, key_id)
    except GatewayError as error:
        return error_page(request, error.message, status=error.status)
    return RedirectResponse(f"{KEYS_PATH}?done=revoked", status_code=303)


@router.get("/ui/admin")
async def admin_page(request: Request) -> Response:
    caller = await _viewer(request)
    if isinstance(caller, Response):
        return caller
    if not caller.is_admin:
        return error_page(request, translator(language_of(request))["admins_only"], status=403)
    runtime = runtime_of(request)
    users = await runtime.auth.users.list()
    query, status_filter = _filters(request)
    keys = await visible_keys(runtime, caller, query=query, status=status_filter)
    active: dict[str, int] = {}
    for info in keys:
        if info.active and info.owner:
            active[info.owner] = active.get(info.owner, 0) + 1
    context = {
        **_base_context(request, caller),
        **_listing(request, keys, query, status_filter),
        "users": users,
        "emails": {info.id: info.email for info, _ in users},
        "active": active,
    }
    return render(request, "admin.html", context)
