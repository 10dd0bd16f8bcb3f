"""The key management API: ``/api/keys`` (a user's own keys; every key for administrators)
and ``/api/key`` (the calling key itself). Everything the web UI does with keys, as JSON."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from xrouter.api.caller import runtime_of
from xrouter.api.key_access import (
    AnyKeyReader,
    KeyReader,
    KeyWriter,
    change_key,
    create_key,
    find_key,
    key_json,
    rate_limits_json,
    revoke_key,
    rotate_key,
    series_json,
    visible_keys,
)
from xrouter.errors import InvalidRequestError
from xrouter.keys.service import MAX_LIMIT, UNCHANGED, KeyChanges

router = APIRouter(prefix="/api", tags=["keys"])
NO_STORE = {"cache-control": "no-store"}

Limit = int | None


class NewKey(BaseModel):
    """A key to create."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    kind: Literal["inference", "management"] = "inference"
    rpm: Limit = Field(default=None, ge=1, le=MAX_LIMIT)
    tpm: Limit = Field(default=None, ge=1, le=MAX_LIMIT)
    tpd: Limit = Field(default=None, ge=1, le=MAX_LIMIT)
    monthly_budget_rub: float | None = Field(default=None, ge=0)
    allowed_models: list[str] | None = Field(default=None, max_length=100)
    expires_at: AwareDatetime | None = None
    # True: the gateway logs the prompts and completions made with this key.
    log_content: bool = False
    # Administrators only: the user the key is for (default: the caller).
    owner: str | None = Field(default=None, max_length=200)


class KeyPatch(BaseModel):
    """Changes to a key; absent fields stay, ``null`` clears (back to the default)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    rpm: Limit = Field(default=None, ge=1, le=MAX_LIMIT)
    tpm: Limit = Field(default=None, ge=1, le=MAX_LIMIT)
    tpd: Limit = Field(default=None, ge=1, le=MAX_LIMIT)
    monthly_budget_rub: float | None = Field(default=None, ge=0)
    allowed_models: list[str] | None = Field(default=None, max_length=100)
    expires_at: AwareDatetime | None = None
    disabled: bool | None = None
    log_content: bool | None = None
    # True: give the key a new secret (returned once, as "key"); the old one stops working.
    rotate: bool = False

    def changes(self) -> KeyChanges:
        given = self.model_fields_set
        if "name" in given and self.name is None:
            raise InvalidRequestError("The name cannot be null.", param="name")
        if "disabled" in given and self.disabled is None:
            raise InvalidRequestError("disabled must be true or false.", param="disabled")
        if "log_content" in given and self.log_content is None:
            raise InvalidRequestError("log_content must be true or false.", param="log_content")
        values = {
            name: getattr(self, name) if name in given else UNCHANGED
            for name in (
                "name",
                "rpm",
                "tpm",
                "tpd",
                "monthly_budget_rub",
                "allowed_models",
                "expires_at",
                "disabled",
                "log_content",
            )
        }
        return KeyChanges(**values)


@router.post("/keys", status_code=201, summary="Create a key (its secret is shown only here)")
async def create(request: Request, body: NewKey, caller: KeyWriter) -> JSONResponse:
    runtime = runtime_of(request)
    created = await create_key(runtime, caller, **body.model_dump())
    payload = {"key": created.key, **key_json(runtime, created.info)}
    return JSONResponse(payload, status_code=201, headers=NO_STORE)


@router.get("/keys", summary="List keys (your own; every key for administrators)")
async def list_keys(
    request: Request,
    caller: KeyReader,
    q: Annotated[str | None, Query(max_length=200, description="name, id or prefix")] = None,
    status: Literal["active", "disabled", "expired", "revoked"] | None = None,
    owner: Annotated[str | None, Query(max_length=200, description="administrators")] = None,
) -> JSONResponse:
    runtime = runtime_of(request)
    keys = await visible_keys(runtime, caller, owner=owner, query=q, status=status)
    return JSONResponse({"data": [key_json(runtime, info) for info in keys]})


@router.get("/keys/{key_id}", summary="One key")
async def get_key(request: Request, key_id: str, caller: KeyReader) -> JSONResponse:
    runtime = runtime_of(request)
    return JSONResponse(key_json(runtime, await find_key(runtime, caller, key_id)))


@router.patch(
    "/keys/{key_id}",
    summary="Rename, change limits, disable or enable, switch content logging, rotate",
)
async def patch_key(
    request: Request, key_id: str, body: KeyPatch, caller: KeyWriter
) -> JSONResponse:
    runtime = runtime_of(request)
    info = await change_key(runtime, caller, key_id, body.changes())
    if not body.rotate:
        return JSONResponse(key_json(runtime, info))
    rotated = await rotate_key(runtime, caller, key_id)
    payload = {"key": rotated.key, **key_json(runtime, rotated.info)}
    return JSONResponse(payload, headers=NO_STORE)


@router.delete("/keys/{key_id}", summary="Revoke a key (final)")
async def delete_key(request: Request, key_id: str, caller: KeyWriter) -> JSONResponse:
    runtime = runtime_of(request)
    return JSONResponse(key_json(runtime, await revoke_key(runtime, caller, key_id)))


@router.get("/keys/{key_id}/usage", summary="A key's usage per minute, hour or day")
async def key_usage(
    request: Request,
    key_id: str,
    caller: KeyReader,
    granularity: Literal["minute", "hour", "day"] = "hour",
    start: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    end: Annotated[AwareDatetime | None, Query(alias="to")] = None,
) -> JSONResponse:
    runtime = runtime_of(request)
    await find_key(runtime, caller, key_id)
    series = await runtime.usage_reports.series(key_id, granularity, start, end)
    return JSONResponse(series_json(series))


@router.get("/key", summary="The calling key: its settings and what is left of its quotas")
async def current_key(request: Request, caller: AnyKeyReader) -> JSONResponse:
    runtime = runtime_of(request)
    if caller.key is None:
        raise InvalidRequestError(
            "GET /api/key describes the key the request is made with; send one as "
            "'Authorization: Bearer ...'.",
            code="no_key",
        )
    info = await find_key(runtime, caller, caller.key.id)
    today = await runtime.usage_reports.totals_since([info.id], runtime.usage_reports.today())
    used_today = today.get(info.id)
    payload = {
        **key_json(runtime, info),
        "rate_limits": await rate_limits_json(runtime, info),
        "usage_today": {
            "requests": used_today.requests if used_today else 0,
            "total_tokens": used_today.total_tokens if used_today else 0,
            "cost_rub": round(used_today.cost_rub, 6) if used_today else 0.0,
        },
    }
    return JSONResponse(payload)
