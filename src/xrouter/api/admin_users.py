"""The admin API for users: list them with their keys, create, disable or enable, and make
administrators. Disabling a user disables every key they own, and ends nothing else: their
UI sessions stop resolving (a disabled user is not found) and their keys stop working."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from xrouter.api.caller import runtime_of
from xrouter.api.key_access import AdminReader, AdminWriter
from xrouter.auth.users import UserInfo
from xrouter.errors import InvalidRequestError, NotFoundError

router = APIRouter(prefix="/api/admin", tags=["admin"])


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1000)
    is_admin: bool = False


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    disabled: bool | None = None
    is_admin: bool | None = None


def user_json(info: UserInfo, disabled: bool, keys: int = 0) -> dict[str, Any]:
    return {
        "id": info.id,
        "email": info.email,
        "is_admin": info.is_admin,
        "disabled": disabled,
        "created_at": info.created_at.isoformat(),
        "active_keys": keys,
    }


@router.get("/users", summary="List users (administrators)")
async def list_users(request: Request, caller: AdminReader) -> JSONResponse:
    runtime = runtime_of(request)
    users = await runtime.auth.users.list()
    owners = Counter(info.owner for info in await runtime.key_service.list() if info.active)
    data = [user_json(info, disabled, owners[info.id]) for info, disabled in users]
    return JSONResponse({"data": data})


@router.post("/users", status_code=201, summary="Create a user (administrators)")
async def create_user(request: Request, body: NewUser, caller: AdminWriter) -> JSONResponse:
    runtime = runtime_of(request)
    info = await runtime.auth.users.create(body.email, body.password, is_admin=body.is_admin)
    return JSONResponse(user_json(info, False), status_code=201)


@router.patch("/users/{user_id}", summary="Disable, enable or promote a user (administrators)")
async def patch_user(
    request: Request, user_id: str, body: UserPatch, caller: AdminWriter
) -> JSONResponse:
    runtime = runtime_of(request)
    if user_id == caller.user_id and (body.disabled or body.is_admin is False):
        raise InvalidRequestError(
            "You cannot disable yourself or take away your own administrator rights.",
            code="self_lockout",
        )
    changed = await runtime.auth.users.set_flags(
        user_id, disabled=body.disabled, is_admin=body.is_admin
    )
    if changed is None:
        raise NotFoundError(f"No user with id '{user_id[:64]}'.", code="user_not_found")
    info, disabled = changed
    if body.disabled:
        await runtime.key_service.disable_all_of(user_id)
    keys = [key for key in await runtime.key_service.list(user_id) if key.active]
    return JSONResponse(user_json(info, disabled, len(keys)))
