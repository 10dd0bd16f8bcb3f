"""Turns a request into an ordered list of targets to try: the routing decision, from memory.

The client's ``model`` (a route alias or a model id) comes first, then its OpenRouter-style
``models`` fallbacks; each route expands to its targets in its strategy's order. Targets the
caller's key may not reach, that ``provider.only``/``ignore`` exclude, or that cannot honour a
feature the request uses are dropped with a reason; ``provider.order``/``sort`` reorder the
rest; targets whose circuit breaker is open are skipped while any other target remains. When
nothing remains the error says why, target by target.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from xrouter.errors import (
    GatewayError,
    InvalidRequestError,
    ModelNotFoundError,
    PermissionDeniedError,
)
from xrouter.gateway.wire import ChatCompletionRequest, ProviderPreferences
from xrouter.keys.cache import ActiveKey
from xrouter.keys.policy import model_allowed
from xrouter.providers.base import ModelTarget, Provider, UpstreamRequest
from xrouter.providers.transport import Timeouts
from xrouter.routing import strategies
from xrouter.routing.breaker import BreakerBoard
from xrouter.routing.capabilities import Needs, capabilities_of, needs_of, shortfall
from xrouter.routing.catalog import ModelCatalog
from xrouter.routing.model_id import parse_model_id
from xrouter.routing.routes import (
    CapabilityConfig,
    PriceConfig,
    Route,
    RouteTable,
    TargetConfig,
    TimeoutConfig,
)

# Reasons a target was left out of a plan (also metric label values).
NOT_FOUND = "not_found"
KEY_FORBIDS = "key_forbids"
EXCLUDED = "excluded"
INCAPABLE = "incapable"
CIRCUIT_OPEN = "circuit_open"


@dataclass(frozen=True, slots=True)
class RoutingDefaults:
    """What a route or target does not set itself, from the settings."""

    timeouts: Timeouts
    retries: int = 0
    deadline_seconds: float = 120.0
    # key id, or "owner:<owner>" -> providers its traffic may reach.
    key_providers: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PlannedTarget:
    """One target of a plan, with everything an attempt at it needs. A route's targets are
    built once per routing table and shared by the plans that use them."""

    target: ModelTarget
    provider: Provider
    weight: float = 1.0
    retries: int = 0
    timeouts: Timeouts = field(default_factory=Timeouts)
    params: Mapping[str, Any] = field(default_factory=dict)
    price: PriceConfig | None = None
    capabilities: CapabilityConfig | None = None
    # The target's public id: planning, routing and metrics read it many times per request.
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", self.target.public_id)

    def cost(self, prompt_tokens: int, output_tokens: int) -> float | None:
        if self.price is None:
            return None
        return (prompt_tokens * self.price.prompt + output_tokens * self.price.completion) / 1000


@dataclass(frozen=True, slots=True)
class Skip:
    target: str
    reason: str
    message: str
    param: str | None = None


@dataclass(slots=True)
class Plan:
    requested: str
    targets: list[PlannedTarget]
    route: str | None = None
    skipped: list[Skip] = field(default_factory=list)
    deadline_seconds: float = 120.0
    allow_fallbacks: bool = True
    # Every target's breaker was open: they are tried anyway rather than failing outright.
    forced: bool = False
    # The upstream request translated for ``prepared_for`` (the first target, before the call).
    prepared_for: PlannedTarget | None = None
    prepared: UpstreamRequest | None = None

    @property
    def primary(self) -> PlannedTarget:
        return self.targets[0]


class RoutePlanner:
    def __init__(
        self,
        providers: Mapping[str, Provider],
        catalog: ModelCatalog,
        routes: Callable[[], RouteTable],
        breakers: BreakerBoard,
        latency: strategies.LatencyTracker,
        defaults: RoutingDefaults,
        rng: random.Random | None = None,
    ) -> None:
        self._providers = providers
        self._catalog = catalog
        self._routes = routes
        self._breakers = breakers
        self._latency = latency
        self._defaults = defaults
        self._rng = rng or random.Random()
        # Each route's targets, built once for the routing table they were built from.
        self._table: RouteTable | None = None
        self._route_targets: dict[str, list[PlannedTarget]] = {}

    def plan_chat(self, chat: ChatCompletionRequest, key: ActiveKey) -> Plan:
        model = chat.model
        models = [model, *(m for m in chat.models if m != model)] if chat.models else [model]
        return self.plan(models, "chat", key, chat.provider, needs_of(chat))

    def plan_embeddings(self, model: str, key: ActiveKey) -> Plan:
        """One target: vectors from different models do not mix, so embeddings never fall
        back to another model (a route picks the model, its breaker and strategy apply)."""
        plan = self.plan([model], "embeddings", key)
        del plan.targets[1:]
        return plan

    def plan(
        self,
        models: Sequence[str],
        kind: str,
        key: ActiveKey,
        preferences: ProviderPreferences | None = None,
        needs: Needs | None = None,
    ) -> Plan:
        """The targets to try for ``models`` (first is the client's ``model``), in order."""
        table = self._routes()
        if table is not self._table:
            self._table = table
            self._route_targets = {}
        plan = Plan(requested=models[0], targets=[])
        plan.deadline_seconds = self._defaults.deadline_seconds
        seen: set[str] = set()
        for index, name in enumerate(models):
            route = table.find(name, key.id, key.owner)
            if index == 0 and route is not None:
                plan.route = route.name
                plan.allow_fallbacks = route.config.allow_fallbacks
                plan.deadline_seconds = route.config.deadline_seconds or plan.deadline_seconds
            for candidate in self._expand(name, route, needs):
                if candidate.key not in seen:
                    seen.add(candidate.key)
                    self._admit(plan, candidate, kind, key, preferences)
        _keep_allowed_models(plan, key)
        if needs is not None and len(plan.targets) > 1:
            self._drop_incapable(plan, needs)
        if preferences is not None:
            self._prefer(plan, preferences, needs)
            plan.allow_fallbacks = plan.allow_fallbacks and preferences.allow_fallbacks
        if not plan.allow_fallbacks:
            del plan.targets[1:]
        self._skip_open_circuits(plan)
        if not plan.targets:
            raise nothing_left(plan)
        return plan

    def _expand(self, name: str, route: Route | None, needs: Needs | None) -> list[PlannedTarget]:
        if route is None:
            target = parse_model_id(name)  # ModelNotFoundError for what is not a model id
            provider = self._providers.get(target.provider)
            if provider is None:
                enabled = ", ".join(sorted(self._providers)) or "none"
                raise ModelNotFoundError(
                    name,
                    f"does not exist: unknown provider '{target.provider}' (enabled: {enabled})",
                )
            defaults = self._defaults
            return [PlannedTarget(target, provider, 1.0, defaults.retries, defaults.timeouts)]
        planned = self._route_targets.get(route.name)
        if planned is None:
            planned = self._route_targets[route.name] = [
                self._planned(target, settings, route)
                for target, settings in zip(route.targets, route.config.targets, strict=True)
                if target.provider in self._providers
            ]
        return strategies.order(
            route.config.strategy,
            planned,
            rng=self._rng,
            latency=self._latency,
            tokens=lambda: _token_estimate(needs),
        )

    def _planned(self, target: ModelTarget, config: TargetConfig, route: Route) -> PlannedTarget:
        defaults = self._defaults
        retries = config.retries if config.retries is not None else route.config.retries
        return PlannedTarget(
            target=target,
            provider=self._providers[target.provider],
            weight=config.weight,
            retries=defaults.retries if retries is None else retries,
            timeouts=_merge(defaults.timeouts, route.config.timeouts, config.timeouts),
            params=config.params,
            price=config.price,
            capabilities=config.capabilities,
        )

    def _admit(
        self,
        plan: Plan,
        candidate: PlannedTarget,
        kind: str,
        key: ActiveKey,
        preferences: ProviderPreferences | None,
    ) -> None:
        target = candidate.target
        if self._catalog.knows(target, kind) is False:
            actual = self._catalog.kind_of(target)
            message = "does not exist" if actual is None else f"serves {actual} only, not {kind}"
            plan.skipped.append(Skip(candidate.key, NOT_FOUND, message, "model"))
            return
        allowed = self._key_providers(key)
        if allowed is not None and target.provider not in allowed:
            message = f"is on provider '{target.provider}', which this key may not use"
            plan.skipped.append(Skip(candidate.key, KEY_FORBIDS, message, "model"))
            return
        if preferences is not None:
            if preferences.only is not None and target.provider not in preferences.only:
                message = "is excluded by provider.only"
                plan.skipped.append(Skip(candidate.key, EXCLUDED, message, "provider.only"))
                return
            if preferences.ignore is not None and target.provider in preferences.ignore:
                message = "is excluded by provider.ignore"
                plan.skipped.append(Skip(candidate.key, EXCLUDED, message, "provider.ignore"))
                return
        plan.targets.append(candidate)

    def _key_providers(self, key: ActiveKey) -> frozenset[str] | None:
        mapping = self._defaults.key_providers
        if not mapping:
            return None
        allowed = mapping.get(key.id)
        if allowed is None and key.owner is not None:
            allowed = mapping.get(f"owner:{key.owner}")
        return allowed

    def _drop_incapable(self, plan: Plan, needs: Needs) -> None:
        capable = []
        for candidate in plan.targets:
            problem = shortfall(capabilities_of(candidate.target, candidate.capabilities), needs)
            if problem is None:
                capable.append(candidate)
            else:
                param, reason = problem
                plan.skipped.append(Skip(candidate.key, INCAPABLE, reason, param))
        plan.targets = capable

    def _prefer(self, plan: Plan, preferences: ProviderPreferences, needs: Needs | None) -> None:
        if preferences.sort == "price":
            plan.targets = strategies.lowest_cost(plan.targets, *_token_estimate(needs))
        elif preferences.sort in ("latency", "throughput"):
            plan.targets = strategies.least_latency(plan.targets, self._latency)
        if preferences.order:
            rank = {name: index for index, name in enumerate(preferences.order)}
            listed = sorted(
                (c for c in plan.targets if c.target.provider in rank),
                key=lambda c: rank[c.target.provider],
            )
            rest = [c for c in plan.targets if c.target.provider not in rank]
            # Without fallbacks, only the providers named in ``order`` may serve.
            plan.targets = listed + (rest if preferences.allow_fallbacks else [])

    def _skip_open_circuits(self, plan: Plan) -> None:
        healthy = [c for c in plan.targets if self._breakers.available(c.key)]
        if len(healthy) == len(plan.targets):
            return
        if not healthy:
            plan.forced = bool(plan.targets)
            return
        for candidate in plan.targets:
            if candidate not in healthy:
                plan.skipped.append(Skip(candidate.key, CIRCUIT_OPEN, "has an open circuit"))
        plan.targets = healthy


def _keep_allowed_models(plan: Plan, key: ActiveKey) -> None:
    """Drop targets outside the key's model allow-list, unless that would drop them all: then
    the key policy step refuses the request with its own error."""
    if key.allowed_models is None:
        return
    allowed = [c for c in plan.targets if model_allowed(key.allowed_models, c.target)]
    if not allowed:
        return
    for candidate in plan.targets:
        if candidate not in allowed:
            message = "is not among the models this key may use"
            plan.skipped.append(Skip(candidate.key, KEY_FORBIDS, message, "model"))
    plan.targets = allowed


def nothing_left(plan: Plan) -> GatewayError:
    """The error for a plan without targets: 404, 403 or 400, naming each target's reason."""
    reasons = {skip.reason for skip in plan.skipped}
    details = "; ".join(f"{skip.target} {clause(skip.message)}" for skip in plan.skipped)
    if not plan.skipped or reasons == {NOT_FOUND}:
        only = plan.skipped[0] if len(plan.skipped) == 1 else None
        if only is not None and only.target == plan.requested:
            return ModelNotFoundError(plan.requested, only.message)
        return ModelNotFoundError(plan.requested)
    if reasons <= {NOT_FOUND, KEY_FORBIDS}:
        return PermissionDeniedError(
            f"This key may not use '{plan.requested}': {details}.", code="provider_not_allowed"
        )
    param = next((s.param for s in plan.skipped if s.reason in (INCAPABLE, EXCLUDED)), None)
    return InvalidRequestError(
        f"No target of '{plan.requested}' can serve this request: {details}.",
        param=param,
        code="no_capable_target",
    )


def clause(message: str) -> str:
    """``message`` without its closing full stop, to be joined with others into one sentence."""
    return message.rstrip().rstrip(".")


def _token_estimate(needs: Needs | None) -> tuple[int, int]:
    if needs is None:
        return 0, 0
    return needs.prompt_tokens, needs.output_tokens or 0


def _merge(base: Timeouts, *layers: TimeoutConfig | None) -> Timeouts:
    merged = base
    for layer in layers:
        if layer is None:
            continue
        changes = {name: value for name, value in layer if value is not None}
        if changes:
            merged = replace(merged, **changes)
    return merged
