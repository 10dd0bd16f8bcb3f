"""The OpenRouter-compatible key API, so scripts written for OpenRouter's management keys work
by changing the host: ``/api/v1/keys``, ``/api/v1/key`` and ``/api/v1/generation``.

A key's ``hash`` is its XRouter id; ``limit`` is its monthly budget in roubles (XRouter budgets
reset monthly, so ``limit_reset`` is ``"monthly"`` or null); ``usage*`` are roubles spent.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from xrouter.api.caller import Caller, runtime_of
from xrouter.api.key_access import (
    AnyKeyReader,
    KeyReader,
    KeyWriter,
    change_key,
    create_key,
    find_key,
    revoke_key,
    visible_keys,
)
from xrouter.errors import InvalidRequestError, NotFoundError
from xrouter.keys.cache import MANAGEMENT
from xrouter.keys.service import UNCHANGED, KeyChanges, KeyInfo
from xrouter.runtime import Runtime
from xrouter.storage.models import utc_now

router = APIRouter(prefix="/api/v1", tags=["openrouter-compatible"])
_EPOCH = datetime(1970, 1, 1).astimezone()


class OpenRouterNewKey(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=200)
    limit: float | None = Field(default=None, ge=0)
    limit_reset: str | None = None
    expires_at: AwareDatetime | None = None


class OpenRouterKeyPatch(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    disabled: bool | None = None
    limit: float | None = Field(default=None, ge=0)
    limit_reset: str | None = None


def _check_reset(value: str | None) -> None:
    if value not in (None, "monthly"):
        raise InvalidRequestError(
            "XRouter budgets reset monthly: limit_reset must be 'monthly' or null.",
            param="limit_reset",
        )


async def _described(runtime: Runtime, keys: list[KeyInfo]) -> list[dict[str, Any]]:
    reports = runtime.usage_reports
    ids = [info.id for info in keys]
    today = reports.today()
    week = today - timedelta(days=today.astimezone(reports.calendar.zone).weekday())
    daily = await reports.totals_since(ids, today)
    weekly = await reports.totals_since(ids, week)
    monthly = await reports.totals_since(ids, reports.month())
    ever = await reports.totals_since(ids, _EPOCH)
    described = []
    for info in keys:
        spent = runtime.spend.spent(info.id)
        budget = info.monthly_budget_rub
        described.append(
            {
                "hash": info.id,
                "name": info.name,
                "label": info.prefix,
                "disabled": info.disabled,
                "limit": budget,
                "limit_remaining": max(budget - spent, 0.0) if budget is not None else None,
                "limit_reset": "monthly" if budget is not None else None,
                "include_byok_in_limit": False,
                "usage": _cost(ever.get(info.id)),
                "usage_daily": _cost(daily.get(info.id)),
                "usage_weekly": _cost(weekly.get(info.id)),
                "usage_monthly": _cost(monthly.get(info.id)),
                "created_at": info.created_at.isoformat(),
                "updated_at": info.updated_at.isoformat(),
                "expires_at": info.expires_at.isoformat() if info.expires_at else None,
            }
        )
    return described


def _cost(totals: Any) -> float:
    return round(totals.cost_rub, 6) if totals is not None else 0.0


async def _live_key(runtime: Runtime, caller: Caller, key_hash: str) -> KeyInfo:
    info = await find_key(runtime, caller, key_hash)
    if info.revoked_at is not None:  # OpenRouter forgets deleted keys
        raise NotFoundError(f"No API key with hash '{key_hash}'.", code="key_not_found")
    return info


@router.get("/keys", summary="List keys (OpenRouter-compatible)")
async def list_keys(
    request: Request,
    caller: KeyReader,
    offset: Annotated[int, Query(ge=0)] = 0,
    include_disabled: bool = True,
) -> JSONResponse:
    runtime = runtime_of(request)
    keys = [info for info in await visible_keys(runtime, caller) if info.revoked_at is None]
    if not include_disabled:
        keys = [info for info in keys if not info.disabled]
    page = keys[offset : offset + 100]
    return JSONResponse({"data": await _described(runtime, page)})


@router.post("/keys", status_code=201, summary="Create a key (OpenRouter-compatible)")
async def create(request: Request, body: OpenRouterNewKey, caller: KeyWriter) -> JSONResponse:
    _check_reset(body.limit_reset)
    runtime = runtime_of(request)
    created = await create_key(
        runtime, caller, name=body.name, monthly_budget_rub=body.limit, expires_at=body.expires_at
    )
    [data] = await _described(runtime, [created.info])
    return JSONResponse(
        {"data": data, "key": created.key}, status_code=201, headers={"cache-control": "no-store"}
    )


@router.get("/keys/{key_hash}", summary="One key (OpenRouter-compatible)")
async def get_key(request: Request, key_hash: str, caller: KeyReader) -> JSONResponse:
    runtime = runtime_of(request)
    [data] = await _described(runtime, [await _live_key(runtime, caller, key_hash)])
    return JSONResponse({"data": data})


@router.patch("/keys/{key_hash}", summary="Rename, disable or change the limit (OpenRouter)")
async def patch_key(
    request: Request, key_hash: str, body: OpenRouterKeyPatch, caller: KeyWriter
) -> JSONResponse:
    _check_reset(body.limit_reset)
    runtime = runtime_of(request)
    await _live_key(runtime, caller, key_hash)
    given = body.model_fields_set
    if ("name" in given and body.name is None) or ("disabled" in given and body.disabled is None):
        raise InvalidRequestError("name and disabled cannot be null.")
    changes = KeyChanges(
        name=body.name if body.name is not None else UNCHANGED,
        disabled=body.disabled if body.disabled is not None else UNCHANGED,
        monthly_budget_rub=body.limit if "limit" in given else UNCHANGED,
    )
    info = await change_key(runtime, caller, key_hash, changes)
    [data] = await _described(runtime, [info])
    return JSONResponse({"data": data})


@router.delete("/keys/{key_hash}", summary="Delete (revoke) a key (OpenRouter-compatible)")
async def delete_key(request: Request, key_hash: str, caller: KeyWriter) -> JSONResponse:
    runtime = runtime_of(request)
    await _live_key(runtime, caller, key_hash)
    await revoke_key(runtime, caller, key_hash)
    return JSONResponse({"deleted": True})


@router.get("/key", summary="The calling key (OpenRouter-compatible)")
async def current_key(request: Request, caller: AnyKeyReader) -> JSONResponse:
    runtime = runtime_of(request)
    if caller.key is None:
        raise InvalidRequestError(
            "GET /api/v1/key describes the key the request is made with.", code="no_key"
        )
    info = await find_key(runtime, caller, caller.key.id)
    [described] = await _described(runtime, [info])
    data = {
        "label": info.prefix,
        "name": info.name,
        "limit": described["limit"],
        "limit_remaining": described["limit_remaining"],
        "limit_reset": described["limit_reset"],
        "usage": described["usage"],
        "usage_daily": described["usage_daily"],
        "usage_weekly": described["usage_weekly"],
        "usage_monthly": described["usage_monthly"],
        "is_free_tier": False,
        "is_management_key": info.kind == MANAGEMENT,
        "is_provisioning_key": info.kind == MANAGEMENT,
        "expires_at": described["expires_at"],
        "rate_limit": {"requests": info.rpm if info.rpm is not None else -1, "interval": "1m"},
    }
    return JSONResponse({"data": data})


@router.get("/generation", summary="One response's usage record, by its id (OpenRouter)")
async def generation(
    request: Request,
    caller: AnyKeyReader,
    generation_id: Annotated[str, Query(alias="id", min_length=1, max_length=64)],
) -> JSONResponse:
    runtime = runtime_of(request)
    record = await runtime.usage_reports.generation(generation_id)
    if record is None or not _may_see(caller, record):
        raise NotFoundError(
            f"No generation with id '{generation_id}' (records appear within a second or two).",
            param="id",
            code="generation_not_found",
        )
    return JSONResponse({"data": _generation_json(record)})


def _may_see(caller: Caller, record: dict[str, Any]) -> bool:
    if caller.is_admin:
        return True
    if caller.key is not None and caller.key.kind != MANAGEMENT:
        return bool(record["key_id"] == caller.key.id)
    return caller.user_id is not None and record.get("user_id") == caller.user_id


def _generation_json(record: dict[str, Any]) -> dict[str, Any]:
    created = record["created_at"]
    latency = record["latency_ms"]
    ttft = record.get("ttft_ms")
    return {
        "id": record["id"],
        "request_id": record["request_id"],
        "api_key_hash": record["key_id"],
        "user_id": record.get("user_id"),
        "model": record["model"],
        "provider_name": record["provider"],
        "created_at": created.isoformat() if created else utc_now().isoformat(),
        "streamed": record["stream"],
        "status": record["status_code"],
        "error_code": record.get("error_code"),
        "latency": round(latency),
        "generation_time": round(latency - ttft) if ttft is not None else round(latency),
        "time_to_first_token": round(ttft) if ttft is not None else None,
        "tokens_prompt": record["prompt_tokens"],
        "tokens_completion": record["completion_tokens"],
        "native_tokens_prompt": record["prompt_tokens"],
        "native_tokens_completion": record["completion_tokens"],
        "native_tokens_cached": record["cached_tokens"],
        "total_cost": round(record.get("cost_rub") or 0.0, 6),
        "currency": "RUB",
    }
