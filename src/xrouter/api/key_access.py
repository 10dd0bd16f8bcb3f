"""Key operations on behalf of a caller, shared by the JSON APIs and the web UI: every one
checks that the caller may see the key (404 otherwise) before it acts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request

from xrouter.api.caller import Caller, admin_of, caller_of
from xrouter.errors import PermissionDeniedError
from xrouter.keys.cache import INFERENCE, ActiveKey
from xrouter.keys.service import CreatedKey, KeyChanges, KeyInfo, KeyNotFoundError
from xrouter.limits.policy import Limit
from xrouter.providers.base import ModelTarget
from xrouter.runtime import Runtime
from xrouter.usage.service import UsageSeries

KEY_STATUSES = ("active", "disabled", "expired", "revoked")


async def key_reader(request: Request) -> Caller:
    """FastAPI dependency: a caller who may read keys."""
    return await caller_of(request)


async def key_writer(request: Request) -> Caller:
    """FastAPI dependency: a caller who may change keys (CSRF-checked for UI sessions)."""
    return await caller_of(request, changes=True)


async def any_key_reader(request: Request) -> Caller:
    """FastAPI dependency: like ``key_reader``, but an inference key may ask about itself."""
    return await caller_of(request, inference_key=True)


async def admin_reader(request: Request) -> Caller:
    return await admin_of(request)


async def admin_writer(request: Request) -> Caller:
    return await admin_of(request, changes=True)


# Route parameter types: FastAPI resolves the caller before it reads the body, so a request
# without credentials gets 401 even when its body is invalid.
KeyReader = Annotated[Caller, Depends(key_reader)]
KeyWriter = Annotated[Caller, Depends(key_writer)]
AnyKeyReader = Annotated[Caller, Depends(any_key_reader)]
AdminReader = Annotated[Caller, Depends(admin_reader)]
AdminWriter = Annotated[Caller, Depends(admin_writer)]


async def visible_keys(
    runtime: Runtime,
    caller: Caller,
    *,
    owner: str | None = None,
    query: str | None = None,
    status: str | None = None,
) -> list[KeyInfo]:
    """The keys ``caller`` may see, oldest first, filtered by owner (administrators), a search
    text (name, id or prefix) and a status."""
    if caller.is_admin:
        keys = await runtime.key_service.list(owner)
    elif caller.user_id is None:
        keys = []
    else:
        keys = await runtime.key_service.list(caller.user_id)
    keys = [info for info in keys if caller.can_see(info)]
    if query:
        needle = query.strip().casefold()
        keys = [
            info
            for info in keys
            if needle in info.name.casefold()
            or needle in info.id.casefold()
            or needle in info.prefix.casefold()
        ]
    if status in KEY_STATUSES:
        keys = [info for info in keys if info.status == status]
    return keys


async def find_key(runtime: Runtime, caller: Caller, key_id: str) -> KeyInfo:
    """The key, if ``caller`` may see it; ``KeyNotFoundError`` (404) otherwise."""
    if len(key_id) > 64:
        raise KeyNotFoundError(key_id[:64])
    return caller.check(await runtime.key_service.get(key_id))


async def create_key(
    runtime: Runtime,
    caller: Caller,
    *,
    name: str,
    owner: str | None = None,
    kind: str = INFERENCE,
    rpm: int | None = None,
    tpm: int | None = None,
    tpd: int | None = None,
    monthly_budget_rub: float | None = None,
    allowed_models: Sequence[str] | None = None,
    expires_at: datetime | None = None,
    log_content: bool = False,
) -> CreatedKey:
    """A key owned by the caller (or, for administrators, by ``owner``)."""
    if caller.key is not None and caller.key.kind == INFERENCE:
        raise PermissionDeniedError("An inference key cannot create keys.", code="inference_key")
    if owner is not None and owner != caller.user_id and not caller.is_admin:
        raise PermissionDeniedError(
            "Only administrators may create keys for someone else.", param="owner"
        )
    return await runtime.key_service.create(
        name,
        owner if owner is not None else caller.user_id,
        kind=kind,
        rpm=rpm,
        tpm=tpm,
        tpd=tpd,
        monthly_budget_rub=monthly_budget_rub,
        allowed_models=allowed_models,
        expires_at=expires_at,
        log_content=log_content,
    )


async def change_key(runtime: Runtime, caller: Caller, key_id: str, changes: KeyChanges) -> KeyInfo:
    await find_key(runtime, caller, key_id)
    return await runtime.key_service.update(key_id, changes)


async def rotate_key(runtime: Runtime, caller: Caller, key_id: str) -> CreatedKey:
    await find_key(runtime, caller, key_id)
    return await runtime.key_service.rotate(key_id)


async def revoke_key(runtime: Runtime, caller: Caller, key_id: str) -> KeyInfo:
    await find_key(runtime, caller, key_id)
    return await runtime.key_service.revoke(key_id)


def key_json(runtime: Runtime, info: KeyInfo) -> dict[str, Any]:
    """A key as the JSON API shows it: never its secret."""
    spent = runtime.spend.spent(info.id)
    budget = info.monthly_budget_rub
    return {
        "id": info.id,
        "name": info.name,
        "prefix": info.prefix,
        "kind": info.kind,
        "owner": info.owner,
        "status": info.status,
        "disabled": info.disabled,
        "created_at": _iso(info.created_at),
        "updated_at": _iso(info.updated_at),
        "last_used_at": _iso(info.last_used_at),
        "expires_at": _iso(info.expires_at),
        "revoked_at": _iso(info.revoked_at),
        "allowed_models": list(info.allowed_models) if info.allowed_models is not None else None,
        "limits": {"rpm": info.rpm, "tpm": info.tpm, "tpd": info.tpd},
        "monthly_budget_rub": budget,
        "log_content": info.log_content,
        "created_by_app": info.created_by_app,
        "spent_this_month_rub": round(spent, 6),
        "budget_remaining_rub": round(max(budget - spent, 0.0), 6) if budget is not None else None,
        "budget_resets_at": _iso(runtime.spend.resets_at()),
    }


async def rate_limits_json(runtime: Runtime, info: KeyInfo) -> dict[str, Any]:
    """The key's own rate limits in force (its own or the defaults) and what is left of each
    right now (a zero-cost look at the limiter: nothing is charged)."""
    active = ActiveKey(
        id=info.id,
        name=info.name,
        owner=None,
        prefix=info.prefix,
        rpm=info.rpm,
        tpm=info.tpm,
        tpd=info.tpd,
    )
    limiter = runtime.limiter
    limits: Sequence[Limit] = [
        limit
        for limit in limiter.policy.limits_for(active, ModelTarget("-", "-"))
        if limit.scope == "key"
    ]
    result: dict[str, Any] = {}
    if not limits:
        return result
    decision = await limiter.backend.acquire(limits, [0] * len(limits))
    for limit, state in zip(limits, decision.states, strict=True):
        result[limit.name] = {
            "limit": limit.limit,
            "remaining": max(0, int(state.remaining)),
            "full_again_in_seconds": round(state.reset_after, 3),
        }
    return result


def series_json(series: UsageSeries) -> dict[str, Any]:
    """A usage series: one entry per bucket, and the totals."""
    return {
        "granularity": series.granularity,
        "from": _iso(series.start),
        "to": _iso(series.end),
        "totals": _totals_json(series.totals),
        "data": [
            {"start": _iso(point.start), **_totals_json(point.totals)} for point in series.points
        ],
    }


def _totals_json(totals: Any) -> dict[str, Any]:
    return {
        "requests": totals.requests,
        "errors": totals.errors,
        "prompt_tokens": totals.prompt_tokens,
        "completion_tokens": totals.completion_tokens,
        "total_tokens": totals.total_tokens,
        "cost_rub": round(totals.cost_rub, 6),
        "average_latency_ms": _rounded(totals.average_latency_ms),
        "average_ttft_ms": _rounded(totals.average_ttft_ms),
    }


def _rounded(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
