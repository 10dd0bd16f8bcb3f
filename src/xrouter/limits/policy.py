"""Which limits apply to a request, and how many tokens it is expected to use.

A request is checked against every limit that applies to it at once: its key's, its owner's,
its model's and its provider's. Token limits are charged an estimate before the upstream call
(prompt size plus the completion allowance) and settled with the real usage afterwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from xrouter.gateway.wire import ChatCompletionRequest
from xrouter.keys.cache import ActiveKey
from xrouter.providers.base import ModelTarget
from xrouter.settings import RateQuota, Settings

Scope = Literal["key", "user", "model", "provider"]
LimitName = Literal["rpm", "tpm", "tpd"]
LimitKind = Literal["requests", "tokens"]

MINUTE = 60.0
DAY = 86_400.0
# A rough, language-neutral size of a token in request-body bytes (JSON included). Only the
# reservation uses it; the real usage replaces it when the request settles.
BYTES_PER_TOKEN = 4
# Every limiter key carries this one hash tag, so one Lua script can touch all the limits of a
# request (key, owner, model, provider) on a Redis Cluster: they always live on one slot.
REDIS_HASH_TAG = "{xrouter-rl}"

POLICY_CACHE_SIZE = 10_000
_PERIODS: dict[LimitName, float] = {"rpm": MINUTE, "tpm": MINUTE, "tpd": DAY}
_DESCRIPTIONS: dict[LimitName, str] = {
    "rpm": "requests per minute (RPM)",
    "tpm": "tokens per minute (TPM)",
    "tpd": "tokens per day (TPD)",
}


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit on one subject: ``limit`` units per ``period`` seconds."""

    scope: Scope
    subject: str
    name: LimitName
    limit: int
    # Derived once: the limit step reads them several times per request.
    period: float = field(init=False, compare=False, repr=False)
    kind: LimitKind = field(init=False, compare=False, repr=False)
    # Seconds one unit takes to come back (GCRA's emission interval).
    interval: float = field(init=False, compare=False, repr=False)
    storage_key: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        period = _PERIODS[self.name]
        key = f"xrouter:rl:{REDIS_HASH_TAG}:{self.scope}:{self.subject}:{self.name}"
        object.__setattr__(self, "period", period)
        object.__setattr__(self, "kind", "requests" if self.name == "rpm" else "tokens")
        object.__setattr__(self, "interval", period / self.limit)
        object.__setattr__(self, "storage_key", key)

    def describe(self) -> str:
        """``'tokens per minute (TPM) of key key_...'``: for error messages and logs."""
        return f"{_DESCRIPTIONS[self.name]} of {self.scope} {self.subject}"


class LimitPolicy:
    """Turns settings and a key's own limits into the list of limits for each request."""

    def __init__(self, settings: Settings) -> None:
        self._key_defaults = RateQuota(
            rpm=settings.rate_limit_key_rpm,
            tpm=settings.rate_limit_key_tpm,
            tpd=settings.rate_limit_key_tpd,
        )
        self._user = RateQuota(
            rpm=settings.rate_limit_user_rpm,
            tpm=settings.rate_limit_user_tpm,
            tpd=settings.rate_limit_user_tpd,
        )
        self._models = dict(settings.rate_limit_models)
        self._providers = dict(settings.rate_limit_providers)
        self._completion_tokens = settings.rate_limit_completion_tokens
        # By key object and model. The key cache hands out one object per key until the key
        # changes, so its identity is enough, and cheaper than hashing all of its fields; an
        # entry holds its key, so the identity cannot be reused while the entry lives.
        self._cache: dict[tuple[int, str, str], tuple[ActiveKey, tuple[Limit, ...]]] = {}

    def limits_for(self, key: ActiveKey, target: ModelTarget) -> tuple[Limit, ...]:
        """Every limit the request of ``key`` to ``target`` must fit in; empty: unlimited."""
        cache_key = (id(key), target.provider, target.model)
        entry = self._cache.get(cache_key)
        if entry is None or entry[0] is not key:
            if len(self._cache) >= POLICY_CACHE_SIZE:
                self._cache.clear()
            entry = self._cache[cache_key] = (key, tuple(self._limits_for(key, target)))
        return entry[1]

    def _limits_for(self, key: ActiveKey, target: ModelTarget) -> list[Limit]:
        limits: list[Limit] = []
        defaults = self._key_defaults
        _add(limits, "key", key.id, "rpm", _first(key.rpm, defaults.rpm))
        _add(limits, "key", key.id, "tpm", _first(key.tpm, defaults.tpm))
        _add(limits, "key", key.id, "tpd", _first(key.tpd, defaults.tpd))
        if key.owner:
            _add_quota(limits, "user", key.owner, self._user)
        if self._models:
            model = self._models.get(target.public_id) or self._models.get(
                f"{target.provider}/{target.model}"
            )
            if model is not None:
                _add_quota(limits, "model", f"{target.provider}/{target.model}", model)
        provider = self._providers.get(target.provider)
        if provider is not None:
            _add_quota(limits, "provider", target.provider, provider)
        return limits

    def chat_tokens(self, chat: ChatCompletionRequest, body_size: int) -> int:
        """Tokens reserved for a chat request: its prompt (estimated from the body size) plus
        its completion allowance (``max_completion_tokens``/``max_tokens``, else the default)
        for each of its ``n`` choices."""
        completion = chat.output_limit or self._completion_tokens
        return prompt_tokens(body_size) + completion * (chat.n or 1)

    @staticmethod
    def embedding_tokens(body_size: int) -> int:
        """Tokens reserved for an embeddings request: its input, estimated from the body size."""
        return prompt_tokens(body_size)


def prompt_tokens(body_size: int) -> int:
    return max(1, math.ceil(body_size / BYTES_PER_TOKEN))


def _first(own: int | None, default: int | None) -> int | None:
    return own if own is not None else default


def _add(
    limits: list[Limit], scope: Scope, subject: str, name: LimitName, value: int | None
) -> None:
    if value is not None:
        limits.append(Limit(scope, subject, name, value))


def _add_quota(limits: list[Limit], scope: Scope, subject: str, quota: RateQuota) -> None:
    _add(limits, scope, subject, "rpm", quota.rpm)
    _add(limits, scope, subject, "tpm", quota.tpm)
    _add(limits, scope, subject, "tpd", quota.tpd)
