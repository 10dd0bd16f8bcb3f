"""The key policy step of the proxied path, right after authentication: may this key make this
request? Everything is read from memory (the key cache and the monthly spend).

* ``check_usable``: a disabled key (403), an expired one (401), a management key (403);
* ``KeyPolicy.admit``: the key's model allow-list (403) and its monthly budget (402).

Rate and token quotas are the limiter's (``xrouter.limits``), which runs next.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from fnmatch import fnmatchcase

from xrouter.errors import AuthenticationError, GatewayError, PermissionDeniedError
from xrouter.keys.cache import INFERENCE, ActiveKey
from xrouter.providers.base import ModelTarget
from xrouter.usage.spend import MonthlySpend


class BudgetExceededError(GatewayError):
    """A key spent its monthly budget."""

    status = 402
    error_type = "insufficient_quota"
    default_code = "budget_exceeded"


def check_usable(key: ActiveKey, now: float | None = None) -> None:
    """Refuse a key that is disabled, expired, or not meant for ``/v1``."""
    if key.kind != INFERENCE:
        raise PermissionDeniedError(
            f"The key {key.prefix} is a management key: it may call the key management API "
            "(/api/keys, /api/v1/keys) but not /v1. Use an inference key.",
            code="management_key",
        )
    if key.disabled:
        raise PermissionDeniedError(
            f"The API key {key.prefix} is disabled. Its owner or an administrator can enable it.",
            code="key_disabled",
        )
    if key.expires_at is not None and (now if now is not None else time.time()) >= key.expires_at:
        expired = datetime.fromtimestamp(key.expires_at, UTC).isoformat(timespec="seconds")
        raise AuthenticationError(
            f"The API key {key.prefix} expired at {expired}.", code="key_expired"
        )


def model_allowed(patterns: tuple[str, ...] | None, target: ModelTarget) -> bool:
    """Whether a pattern allows ``target``: by its full id, or by its id without the version
    (so ``yandex/yandexgpt`` allows ``yandex/yandexgpt:rc``)."""
    return patterns is None or id_allowed(patterns, target.public_id)


def id_allowed(patterns: tuple[str, ...], model_id: str) -> bool:
    """``model_allowed`` for a model id (``provider/model[:version]``)."""
    base_id = model_id.split(":", 1)[0]
    return any(
        fnmatchcase(model_id, pattern) or fnmatchcase(base_id, pattern) for pattern in patterns
    )


class KeyPolicy:
    """The per-request checks of a key's own rules."""

    def __init__(self, spend: MonthlySpend) -> None:
        self._spend = spend

    def admit(self, key: ActiveKey, target: ModelTarget) -> None:
        """Refuse a model the key may not use, or a key that spent its monthly budget."""
        if not model_allowed(key.allowed_models, target):
            allowed = ", ".join(key.allowed_models or ()) or "no models"
            raise PermissionDeniedError(
                f"The API key {key.prefix} may not use the model '{target.public_id}'; "
                f"it is limited to: {allowed}.",
                param="model",
                code="model_not_allowed",
            )
        budget = key.monthly_budget_rub
        if budget is not None:
            spent = self._spend.spent(key.id)
            if spent >= budget:
                raise self._over_budget(key, budget, spent)

    def _over_budget(self, key: ActiveKey, budget: float, spent: float) -> BudgetExceededError:
        resets = self._spend.resets_at()
        local = self._spend.calendar.local(resets)
        seconds = max(1, int(resets.timestamp() - time.time()))
        return BudgetExceededError(
            f"Monthly budget of key {key.id} reached: Limit {budget:.2f} RUB, "
            f"Used {spent:.2f} RUB. It resets at {local.isoformat(timespec='minutes')}.",
            headers={"retry-after": str(seconds)},
        )
