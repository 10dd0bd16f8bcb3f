"""The OAuth 2.0 authorization server's endpoints: authorize (RFC 6749 §4.1 with RFC 7636
PKCE), token, revocation (RFC 7009), introspection (RFC 7662), metadata (RFC 8414) and JWKS."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.responses import RedirectResponse, Response

from xrouter.api.forms import FormError, form_values, query_values
from xrouter.api.ui_auth import auth_of, csrf_refused, login_redirect
from xrouter.auth.clients import ClientInfo
from xrouter.auth.codes import NewCode
from xrouter.auth.oauth_errors import OAuthError, invalid_client, invalid_request
from xrouter.auth.pkce import S256, PkceError, check_challenge
from xrouter.auth.scopes import SCOPES, ScopeError, parse_scopes, scope_string
from xrouter.auth.users import UserInfo
from xrouter.ui.pages import error_page, render

router = APIRouter(tags=["oauth"])

AUTHORIZE_PATH = "/oauth/authorize"
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
_AUTHORIZE_FIELDS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
)


class PageError(Exception):
    """An authorization request error shown to the user: the redirect URI cannot be trusted."""


@dataclass(frozen=True, slots=True)
class RedirectError(Exception):
    """An authorization request error reported to the client at its redirect URI."""

    error: OAuthError
    redirect_uri: str
    state: str | None


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    """A validated authorization request."""

    client: ClientInfo
    redirect_uri: str
    scopes: frozenset[str]
    state: str | None
    code_challenge: str
    params: dict[str, str]


def with_query(uri: str, values: dict[str, str | None]) -> str:
    """``uri`` with ``values`` added to its query (existing query parameters are kept)."""
    query = urlencode({name: value for name, value in values.items() if value is not None})
    return f"{uri}{'&' if '?' in uri else '?'}{query}"


def redirect_to_client(request: Request, uri: str, values: dict[str, str | None]) -> Response:
    # RFC 9207: "iss" tells the client which server answered (mix-up attack defence).
    issuer = auth_of(request).tokens.issuer
    return RedirectResponse(with_query(uri, {**values, "iss": issuer}), status_code=303)


async def validate_authorize(request: Request, params: dict[str, str]) -> AuthorizeRequest:
    """Check an authorization request in RFC 6749 §4.1.2.1's order: the client and redirect
    URI first (errors shown on a page), then everything else (errors sent to the client)."""
    client_id = params.get("client_id")
    if not client_id:
        raise PageError("The request has no client_id.")
    client = await auth_of(request).clients.get(client_id)
    if client is None:
        raise PageError("The client_id is not a registered client.")
    redirect_uri = params.get("redirect_uri")
    if not redirect_uri:
        raise PageError("The request has no redirect_uri.")
    if not client.allows_redirect(redirect_uri):
        raise PageError("The redirect_uri is not registered for this client.")
    state = params.get("state")

    def fail(error: str, description: str) -> RedirectError:
        return RedirectError(OAuthError(error, description), redirect_uri, state)

    response_type = params.get("response_type")
    if not response_type:
        raise fail("invalid_request", "response_type is required.")
    if response_type != "code":
        raise fail("unsupported_response_type", "Only response_type=code is supported.")
    try:
        check_challenge(params.get("code_challenge"), params.get("code_challenge_method"))
        scopes = parse_scopes(params.get("scope"))
    except PkceError as error:
        raise fail("invalid_request", str(error)) from None
    except ScopeError as error:
        raise fail("invalid_scope", str(error)) from None
    kept = {name: params[name] for name in _AUTHORIZE_FIELDS if name in params}
    return AuthorizeRequest(client, redirect_uri, scopes, state, params["code_challenge"], kept)


async def _duplicate_safe(
    request: Request, reader: Any
) -> tuple[dict[str, str] | None, Response | None]:
    """Read parameters; a repeated one is an error page (the redirect URI may be the one
    repeated, so it cannot be trusted)."""
    try:
        return await reader(request), None
    except FormError as error:
        return None, error_page(request, str(error), error="invalid_request")


async def _query(request: Request) -> dict[str, str]:
    return query_values(request)


@router.get(AUTHORIZE_PATH, summary="Authorization endpoint (RFC 6749 §4.1.1, PKCE S256 only)")
async def authorize(request: Request) -> Response:
    params, failure = await _duplicate_safe(request, _query)
    if failure is not None or params is None:
        return failure or error_page(request, "Bad request.")
    try:
        valid = await validate_authorize(request, params)
    except PageError as error:
        return error_page(request, str(error), error="invalid_request")
    except RedirectError as error:
        return redirect_to_client(
            request, error.redirect_uri, {**error.error.body(), "state": error.state}
        )
    user = await auth_of(request).ui_sessions.user(request)
    if user is None:
        return login_redirect(request)
    return _consent(request, valid, user)


def _consent(request: Request, valid: AuthorizeRequest, user: UserInfo) -> Response:
    context = {
        "user": user,
        "csrf_token": auth_of(request).ui_sessions.csrf_token(request),
        "app_name": valid.client.name,
        "client_id": valid.client.id,
        "scopes": [SCOPES[name] for name in sorted(valid.scopes)],
        "redirect_uri": valid.redirect_uri,
        "action": AUTHORIZE_PATH,
        "fields": sorted(valid.params.items()),
    }
    return render(request, "consent.html", context)


@router.post(AUTHORIZE_PATH, include_in_schema=False)
async def authorize_decision(request: Request) -> Response:
    params, failure = await _duplicate_safe(request, form_values)
    if failure is not None or params is None:
        return failure or error_page(request, "Bad request.")
    auth = auth_of(request)
    if not auth.ui_sessions.csrf_valid(request, params.pop("csrf_token", None)):
        return csrf_refused(request)
    user = await auth.ui_sessions.user(request)
    if user is None:
        return error_page(request, "Your session has ended; start again from the app.", status=401)
    decision = params.pop("decision", None)
    try:
        valid = await validate_authorize(request, params)
    except PageError as error:
        return error_page(request, str(error), error="invalid_request")
    except RedirectError as error:
        return redirect_to_client(
            request, error.redirect_uri, {**error.error.body(), "state": error.state}
        )
    if decision != "allow":
        denied = {"error": "access_denied", "error_description": "The user denied access."}
        return redirect_to_client(request, valid.redirect_uri, {**denied, "state": valid.state})
    code = await auth.grants.issue_code(
        NewCode(
            user_id=user.id,
            client_id=valid.client.id,
            redirect_uri=valid.redirect_uri,
            code_challenge=valid.code_challenge,
            code_challenge_method=S256,
            scope=scope_string(valid.scopes),
        )
    )
    return redirect_to_client(request, valid.redirect_uri, {"code": code, "state": valid.state})


def oauth_error_response(error: OAuthError) -> JSONResponse:
    """RFC 6749 §5.2: a JSON error body, never cached."""
    return JSONResponse(
        error.body(), status_code=error.status, headers={**NO_STORE, **error.headers}
    )


async def _authenticate_client(request: Request, form: dict[str, str]) -> ClientInfo:
    """RFC 6749 §2.3: HTTP Basic, or client_id (+ client_secret) in the body; one method only."""
    header = request.headers.get("authorization")
    basic = header is not None and header[:6].lower() == "basic "
    secret: str | None
    if basic:
        if "client_secret" in form:
            raise invalid_request("Use one client authentication method, not two.")
        client_id, secret = _basic_credentials(header or "")
        if form.get("client_id", client_id) != client_id:
            raise invalid_request("client_id in the body differs from the Basic credentials.")
    else:
        client_id = form.get("client_id", "")
        secret = form.get("client_secret")
        if not client_id:
            raise invalid_client("client_id is required.")
    client = await auth_of(request).clients.authenticate(client_id, secret)
    if client is None:
        raise invalid_client("Client authentication failed.", basic=basic)
    return client


def _basic_credentials(header: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise invalid_client("Malformed Basic credentials.", basic=True) from None
    client_id, separator, secret = decoded.partition(":")
    if not separator:
        raise invalid_client("Malformed Basic credentials.", basic=True)
    # RFC 6749 §2.3.1: both parts are form-urlencoded before being joined.
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))


@router.post("/oauth/token", summary="Token endpoint (RFC 6749 §4.1.3, RFC 7636 §4.5)")
async def token(request: Request) -> Response:
    try:
        form = await form_values(request)
        client = await _authenticate_client(request, form)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise invalid_request("grant_type is required.")
        if grant_type != "authorization_code":
            raise OAuthError("unsupported_grant_type", "Only authorization_code is supported.")
        for name in ("code", "redirect_uri", "code_verifier"):
            if name not in form:
                raise invalid_request(f"{name} is required.")
        grant = await auth_of(request).grants.exchange_code(
            client, form["code"], form["redirect_uri"], form["code_verifier"]
        )
    except FormError as error:
        return oauth_error_response(invalid_request(str(error)))
    except OAuthError as error:
        return oauth_error_response(error)
    return JSONResponse(grant.body(), headers=NO_STORE)


@router.post("/oauth/revoke", summary="Token revocation (RFC 7009)")
async def revoke(request: Request) -> Response:
    try:
        form = await form_values(request)
        client = await _authenticate_client(request, form)
        if "token" not in form:
            raise invalid_request("token is required.")
        await auth_of(request).grants.revoke_token(client, form["token"])
    except FormError as error:
        return oauth_error_response(invalid_request(str(error)))
    except OAuthError as error:
        return oauth_error_response(error)
    return Response(status_code=200, headers=NO_STORE)


@router.post("/oauth/introspect", summary="Token introspection (RFC 7662), confidential clients")
async def introspect(request: Request) -> Response:
    try:
        form = await form_values(request)
        client = await _authenticate_client(request, form)
        if not client.confidential:
            raise invalid_client("Introspection needs a confidential client's credentials.")
        if "token" not in form:
            raise invalid_request("token is required.")
        result = await auth_of(request).grants.introspect(form["token"])
    except FormError as error:
        return oauth_error_response(invalid_request(str(error)))
    except OAuthError as error:
        return oauth_error_response(error)
    return JSONResponse(result, headers=NO_STORE)


@router.get(
    "/.well-known/oauth-authorization-server", summary="Authorization server metadata (RFC 8414)"
)
async def metadata(request: Request) -> JSONResponse:
    issuer = auth_of(request).tokens.issuer
    return JSONResponse(
        {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}{AUTHORIZE_PATH}",
            "token_endpoint": f"{issuer}/oauth/token",
            "revocation_endpoint": f"{issuer}/oauth/revoke",
            "introspection_endpoint": f"{issuer}/oauth/introspect",
            "jwks_uri": f"{issuer}/.well-known/jwks.json",
            "scopes_supported": sorted(SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": [S256],
            "token_endpoint_auth_methods_supported": [
                "none",
                "client_secret_basic",
                "client_secret_post",
            ],
            "revocation_endpoint_auth_methods_supported": [
                "none",
                "client_secret_basic",
                "client_secret_post",
            ],
            "introspection_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            "authorization_response_iss_parameter_supported": True,
        },
        headers={"cache-control": "public, max-age=300"},
    )


@router.get("/.well-known/jwks.json", summary="The token signing keys (RFC 7517 JWK Set)")
async def jwks(request: Request) -> JSONResponse:
    return JSONResponse(
        auth_of(request).signing_keys.jwks(), headers={"cache-control": "public, max-age=300"}
    )
