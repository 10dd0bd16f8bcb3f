"""The admin API for OAuth clients: what ``xrouter oauth-clients`` does, over HTTP.

Authenticated by an administrator's web UI session; a request that changes something must also
carry the session's CSRF token in ``X-CSRF-Token`` (the same token the UI's forms carry).
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from xrouter.api.ui_auth import auth_of
from xrouter.auth.clients import ClientInfo
from xrouter.auth.users import UserInfo
from xrouter.errors import AuthenticationError, GatewayError, PermissionDeniedError

router = APIRouter(prefix="/api/admin", tags=["admin"])


class NewClient(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    redirect_uris: list[str] = Field(min_length=1, max_length=20)
    confidential: bool = False


def _client_json(info: ClientInfo) -> dict[str, Any]:
    return {
        "client_id": info.id,
        "name": info.name,
        "redirect_uris": list(info.redirect_uris),
        "confidential": info.confidential,
        "active": info.active,
        "created_at": info.created_at.isoformat(),
    }


def _error(error: GatewayError) -> JSONResponse:
    body = msgspec.to_builtins(error.body())
    return JSONResponse(body, status_code=error.status, headers=error.headers)


async def _admin(request: Request, *, changes: bool) -> UserInfo:
    sessions = auth_of(request).ui_sessions
    user = await sessions.user(request)
    if user is None:
        raise AuthenticationError("Sign in at /ui/login first.", code="not_signed_in")
    if not user.is_admin:
        raise PermissionDeniedError("Administrators only.", code="not_admin")
    if changes and not sessions.csrf_valid(request, request.headers.get("x-csrf-token")):
        raise PermissionDeniedError("Missing or wrong X-CSRF-Token header.", code="csrf")
    return user


@router.get("/oauth-clients", summary="List OAuth clients (administrators)")
async def list_clients(request: Request) -> JSONResponse:
    try:
        await _admin(request, changes=False)
    except GatewayError as error:
        return _error(error)
    clients = await auth_of(request).clients.list()
    return JSONResponse({"data": [_client_json(info) for info in clients]})


@router.post("/oauth-clients", status_code=201, summary="Register an OAuth client (administrators)")
async def create_client(request: Request, body: NewClient) -> JSONResponse:
    try:
        await _admin(request, changes=True)
        created = await auth_of(request).clients.create(
            body.name, body.redirect_uris, confidential=body.confidential
        )
    except GatewayError as error:
        return _error(error)
    payload = _client_json(created.info)
    if created.secret is not None:
        payload["client_secret"] = created.secret
    return JSONResponse(payload, status_code=201, headers={"cache-control": "no-store"})
