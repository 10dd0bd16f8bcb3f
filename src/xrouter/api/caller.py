"""Who is calling the key management API, and which keys they may see.

A caller is one of:

* a signed-in browser (the UI session cookie); requests that change something must also carry
  the session's CSRF token in ``X-CSRF-Token``;
* a management key (``Authorization: Bearer sk-xr-v1-...`` of kind ``management``): it acts for
  its owner; one made on the command line without an owner acts as an administrator;
* an OAuth access token with the ``keys`` scope: it acts for its user;
* an inference key, for the endpoints about the calling key itself only (``GET /api/key``,
  ``GET /api/v1/key``, ``GET /api/v1/generation``).

Someone else's key is reported as not found (404), never as forbidden, so ids cannot be probed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastapi import Request

from xrouter.auth.gateway_auth import bearer_token
from xrouter.auth.scopes import KEYS
from xrouter.auth.tokens import TokenError
from xrouter.errors import AuthenticationError, PermissionDeniedError
from xrouter.keys.cache import MANAGEMENT, ActiveKey
from xrouter.keys.policy import check_usable
from xrouter.keys.service import KeyInfo, KeyNotFoundError
from xrouter.runtime import Runtime


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller of the management API."""

    # The owner whose keys this caller manages (a user id); None for an owner-less
    # management key, which acts as an administrator.
    user_id: str | None
    is_admin: bool
    # The key the request was made with, if it was made with one.
    key: ActiveKey | None = None
    email: str | None = None

    def can_see(self, info: KeyInfo) -> bool:
        """Whether this caller may see and change ``info``."""
        if self.is_admin:
            return True
        if self.key is not None and self.key.kind != MANAGEMENT:
            return info.id == self.key.id
        return self.user_id is not None and info.owner == self.user_id

    def check(self, info: KeyInfo) -> KeyInfo:
        """``info`` if this caller may see it, else ``KeyNotFoundError`` (404, as for a key that
        does not exist)."""
        if not self.can_see(info):
            raise KeyNotFoundError(info.id)
        return info


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def caller_of(
    request: Request, *, changes: bool = False, inference_key: bool = False
) -> Caller:
    """The caller, or 401 (no or bad credentials) / 403 (a credential not allowed here)."""
    runtime = runtime_of(request)
    if request.headers.get("authorization") or request.headers.get("x-api-key"):
        return await _bearer_caller(runtime, bearer_token(request.headers), inference_key)
    sessions = runtime.auth.ui_sessions
    user = await sessions.user(request)
    if user is None:
        raise AuthenticationError(
            "Sign in at /ui/login, or send a management key as 'Authorization: Bearer ...'.",
            code="not_signed_in",
        )
    if changes and not sessions.csrf_valid(request, request.headers.get("x-csrf-token")):
        raise PermissionDeniedError("Missing or wrong X-CSRF-Token header.", code="csrf")
    return Caller(user.id, user.is_admin, email=user.email)


async def admin_of(request: Request, *, changes: bool = False) -> Caller:
    """The caller if they are an administrator, else 403."""
    caller = await caller_of(request, changes=changes)
    if not caller.is_admin:
        raise PermissionDeniedError("Administrators only.", code="not_admin")
    return caller


async def _bearer_caller(runtime: Runtime, token: str, inference_key: bool) -> Caller:
    if not token.startswith("sk-") and token.count(".") == 2:
        return await _token_caller(runtime, token)
    key = runtime.keys.lookup(token)  # refuses a malformed key by its checksum
    if key is None:
        raise AuthenticationError("The API key is malformed, unknown or revoked.")
    if key.kind == MANAGEMENT:
        if key.disabled:
            raise PermissionDeniedError(f"The key {key.prefix} is disabled.", code="key_disabled")
        if key.expires_at is not None and time.time() >= key.expires_at:
            raise AuthenticationError(f"The key {key.prefix} expired.", code="key_expired")
        return await _for_owner(runtime, key)
    if not inference_key:
        raise PermissionDeniedError(
            f"The key {key.prefix} is an inference key: it calls /v1. Managing keys takes a "
            "management key, a UI session or an access token with the 'keys' scope.",
            code="inference_key",
        )
    check_usable(key)
    return Caller(key.owner, False, key=key)


async def _for_owner(runtime: Runtime, key: ActiveKey) -> Caller:
    if key.owner is None:
        return Caller(None, True, key=key)
    user = await runtime.auth.users.get(key.owner)
    if user is None:
        # An owner that is not (or no longer) an active user manages only its own keys.
        return Caller(key.owner, False, key=key)
    return Caller(user.id, user.is_admin, key=key, email=user.email)


async def _token_caller(runtime: Runtime, token: str) -> Caller:
    try:
        claims = runtime.auth.tokens.verify(token)
    except TokenError as error:
        raise AuthenticationError(
            f"The access token is not valid: {error}.", code="invalid_token"
        ) from None
    if KEYS not in claims.scopes:
        raise PermissionDeniedError(
            f"The access token lacks the '{KEYS}' scope needed to manage keys.",
            code="insufficient_scope",
        )
    user = await runtime.auth.users.get(claims.subject)
    if user is None:
        raise AuthenticationError("The access token's user no longer exists.", code="invalid_token")
    return Caller(user.id, user.is_admin, email=user.email)
