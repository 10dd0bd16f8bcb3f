"""The OpenRouter-compatible PKCE key flow: ``GET /auth`` and ``POST /api/v1/auth/keys``.

Apps written for OpenRouter work by changing the host. Errors before the user has seen the
consent page are shown on a page, never sent to the (unregistered) callback URL.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from xrouter.api.forms import FormError, form_values, query_values
from xrouter.api.oauth import NO_STORE, redirect_to_client
from xrouter.api.ui_auth import auth_of, csrf_refused, login_redirect
from xrouter.auth.oauth_errors import OAuthError, invalid_request
from xrouter.auth.openrouter import CallbackError, app_label, check_callback_url
from xrouter.auth.pkce import PkceError, check_challenge
from xrouter.auth.scopes import INFERENCE, SCOPES
from xrouter.ui.pages import error_page, render

router = APIRouter(tags=["openrouter-compatible"])

AUTH_PATH = "/auth"
_FIELDS = ("callback_url", "code_challenge", "code_challenge_method", "state")
MAX_JSON_BYTES = 16 * 1024


def _validate(params: dict[str, str]) -> str:
    """The callback URL of a valid request; ``CallbackError`` or ``PkceError`` otherwise."""
    callback = check_callback_url(params.get("callback_url"))
    check_challenge(params.get("code_challenge"), params.get("code_challenge_method"))
    return callback


@router.get(AUTH_PATH, summary="Start the OpenRouter-compatible key flow (login and consent)")
async def start(request: Request) -> Response:
    try:
        params = query_values(request)
        callback = _validate(params)
    except (FormError, CallbackError, PkceError) as error:
        return error_page(request, str(error), error="invalid_request")
    auth = auth_of(request)
    user = await auth.ui_sessions.user(request)
    if user is None:
        return login_redirect(request)
    context = {
        "user": user,
        "csrf_token": auth.ui_sessions.csrf_token(request),
        "app_name": app_label(callback).removeprefix("App at "),
        "client_id": None,
        "scopes": [SCOPES[INFERENCE]],
        "redirect_uri": callback,
        "key_name": app_label(callback),
        "action": AUTH_PATH,
        "fields": sorted((name, params[name]) for name in _FIELDS if name in params),
    }
    return render(request, "consent.html", context)


@router.post(AUTH_PATH, include_in_schema=False)
async def decide(request: Request) -> Response:
    auth = auth_of(request)
    try:
        params = await form_values(request)
    except FormError as error:
        return error_page(request, str(error), error="invalid_request")
    if not auth.ui_sessions.csrf_valid(request, params.get("csrf_token")):
        return csrf_refused(request)
    user = await auth.ui_sessions.user(request)
    if user is None:
        return error_page(request, "Your session has ended; start again from the app.", status=401)
    try:
        callback = _validate(params)
    except (CallbackError, PkceError) as error:
        return error_page(request, str(error), error="invalid_request")
    state = params.get("state")
    if params.get("decision") != "allow":
        denied = {"error": "access_denied", "error_description": "The user denied access."}
        return redirect_to_client(request, callback, {**denied, "state": state})
    code = await auth.openrouter.issue_code(user.id, callback, params["code_challenge"])
    return redirect_to_client(request, callback, {"code": code, "state": state})


@router.post(
    "/api/v1/auth/keys",
    summary="Exchange a code for an API key (OpenRouter-compatible)",
    responses={400: {"description": "invalid_request or invalid_grant"}},
)
async def exchange(request: Request) -> Response:
    try:
        body = await _json_body(request)
        code = body.get("code")
        if not isinstance(code, str) or not code:
            raise invalid_request("code is required.")
        verifier, method = body.get("code_verifier"), body.get("code_challenge_method")
        if not isinstance(verifier, str | None) or not isinstance(method, str | None):
            raise invalid_request("code_verifier and code_challenge_method must be strings.")
        issued = await auth_of(request).openrouter.exchange(code, verifier, method)
    except OAuthError as error:
        return JSONResponse(_error_json(error), status_code=error.status, headers=NO_STORE)
    return JSONResponse({"key": issued.created.key, "user_id": issued.user_id}, headers=NO_STORE)


def _error_json(error: OAuthError) -> dict[str, object]:
    # XRouter's usual error shape, with the OAuth error code as "code".
    return {
        "error": {
            "message": error.description,
            "type": "invalid_request_error",
            "param": None,
            "code": error.error,
        }
    }


async def _json_body(request: Request) -> dict[str, object]:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == "application/x-www-form-urlencoded":
        try:
            return dict(await form_values(request))
        except FormError as error:
            raise invalid_request(str(error)) from None
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_JSON_BYTES:
            raise invalid_request("The body is too large.")
    try:
        body = json.loads(raw, object_pairs_hook=_no_duplicates)
    except ValueError as error:
        raise invalid_request(f"The body is not a JSON object: {error}") from None
    if not isinstance(body, dict):
        raise invalid_request("The body is not a JSON object.")
    return body


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    names = [name for name, _ in pairs]
    if len(names) != len(set(names)):
        raise ValueError("a member is repeated")
    return dict(pairs)
