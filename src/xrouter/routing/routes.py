"""Routes: aliases that clients use as a model id, each an ordered or weighted list of targets.

A route comes from the ``routes`` setting or from the YAML file named by
``XROUTER_ROUTES_FILE``::

    routes:
      smart:
        strategy: priority            # priority | weighted | latency | cost
        retries: 1
        timeouts: {first_byte: 10}
        targets:
          - model: gigachat/GigaChat-2-Max
            params: {temperature: 0.3}
          - yandex/yandexgpt
      staging-yandex:
        alias: yandex/yandexgpt       # pins a model id to a version, for these keys only
        keys: [key_0123]
        targets: [yandex/yandexgpt:rc]

Configuration is validated here (pydantic, off the request path); ``RouteTable`` is the
compiled, read-only form the planner looks routes up in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from xrouter.errors import ModelNotFoundError
from xrouter.gateway.wire import ChatCompletionRequest
from xrouter.providers.base import ModelTarget
from xrouter.routing.model_id import parse_model_id

Strategy = Literal["priority", "weighted", "latency", "cost"]
_ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,199}$")
# Request fields a target may override: sampling and length knobs, never the conversation.
OVERRIDABLE_PARAMS = frozenset(
    {
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "presence_penalty",
        "frequency_penalty",
        "reasoning_effort",
        "repetition_penalty",
        "seed",
    }
)


class RoutesError(ValueError):
    """Invalid routes; the message names the route and the field, ``route`` the route's name."""

    def __init__(self, message: str, route: str | None = None) -> None:
        super().__init__(message)
        self.route = route


class TimeoutConfig(BaseModel):
    """Seconds; unset values fall back to the route's, then to the global settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connect: float | None = Field(default=None, gt=0)
    first_byte: float | None = Field(default=None, gt=0)
    read: float | None = Field(default=None, gt=0)
    total: float | None = Field(default=None, gt=0)


class CapabilityConfig(BaseModel):
    """Overrides of what a target supports (unset: the built-in knowledge of the model)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tools: bool | None = None
    json_mode: bool | None = None
    images: bool | None = None
    context_length: int | None = Field(default=None, ge=1)
    max_output: int | None = Field(default=None, ge=1)


class PriceConfig(BaseModel):
    """Price per 1,000 tokens, in any one currency: the ``cost`` strategy only compares them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: float = Field(ge=0)
    completion: float = Field(ge=0)


class TargetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    weight: float = Field(default=1.0, ge=0)
    retries: int | None = Field(default=None, ge=0, le=10)
    timeouts: TimeoutConfig | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    capabilities: CapabilityConfig | None = None
    price: PriceConfig | None = None

    @field_validator("model")
    @classmethod
    def _model_id(cls, value: str) -> str:
        try:
            parse_model_id(value)
        except ModelNotFoundError:
            example = "gigachat/GigaChat-2-Max"
            raise ValueError(f"'{value}' is not a model id like '{example}'") from None
        return value

    @field_validator("params")
    @classmethod
    def _overridable(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - OVERRIDABLE_PARAMS)
        if unknown:
            allowed = ", ".join(sorted(OVERRIDABLE_PARAMS))
            raise ValueError(f"'{unknown[0]}' cannot be overridden (allowed: {allowed})")
        probe = {"model": "x", "messages": [{"role": "user", "content": "x"}], **value}
        try:
            msgspec.convert(probe, ChatCompletionRequest)
        except msgspec.ValidationError as error:
            raise ValueError(str(error)) from None
        return value


class RouteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    targets: list[TargetConfig] = Field(min_length=1, max_length=32)
    # The model id clients send to use this route; unset, the route's own name.
    alias: str | None = None
    strategy: Strategy = "priority"
    retries: int | None = Field(default=None, ge=0, le=10)
    deadline_seconds: float | None = Field(default=None, gt=0)
    timeouts: TimeoutConfig | None = None
    allow_fallbacks: bool = True
    # Only these keys (ids) or owners use this route; the route of the same alias without
    # ``keys``/``owners`` serves everyone else.
    keys: list[str] = Field(default_factory=list)
    owners: list[str] = Field(default_factory=list)

    @field_validator("targets", mode="before")
    @classmethod
    def _short_targets(cls, value: object) -> object:
        if isinstance(value, list):
            return [{"model": item} if isinstance(item, str) else item for item in value]
        return value

    @model_validator(mode="after")
    def _weights(self) -> RouteConfig:
        if self.strategy == "weighted" and not any(t.weight > 0 for t in self.targets):
            raise ValueError("a weighted route needs a target with a positive weight")
        return self


@dataclass(frozen=True, slots=True)
class Route:
    """A compiled route: its name, what it answers to, and its configuration."""

    name: str
    alias: str
    config: RouteConfig
    targets: tuple[ModelTarget, ...]

    @property
    def scoped(self) -> bool:
        return bool(self.config.keys or self.config.owners)


class RouteTable:
    """Routes by alias. Read-only once built; a reload builds a new table and swaps it in."""

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self.routes = tuple(routes)
        self._general: dict[str, Route] = {}
        self._scoped: dict[str, list[Route]] = {}
        for route in self.routes:
            if route.scoped:
                self._scoped.setdefault(route.alias, []).append(route)
            elif route.alias in self._general:
                raise RoutesError(
                    f"routes '{self._general[route.alias].name}' and '{route.name}' both answer "
                    f"to '{route.alias}'; give one of them 'keys' or 'owners'",
                    route.name,
                )
            else:
                self._general[route.alias] = route

    def find(self, alias: str, key_id: str, owner: str | None) -> Route | None:
        """The route ``alias`` means for this caller, or None (then it is a plain model id)."""
        for route in self._scoped.get(alias, ()):
            if key_id in route.config.keys or (owner is not None and owner in route.config.owners):
                return route
        return self._general.get(alias)

    def __len__(self) -> int:
        return len(self.routes)


def compile_routes(configs: Mapping[str, RouteConfig], providers: Iterable[str]) -> RouteTable:
    """Check every target's provider is enabled and build the table."""
    enabled = set(providers)
    routes = []
    for name, config in configs.items():
        alias = config.alias or name
        if not _ALIAS.match(alias):
            raise RoutesError(f"route '{name}': '{alias}' is not a usable model id", name)
        targets = tuple(parse_model_id(target.model) for target in config.targets)
        for target in targets:
            if target.provider not in enabled:
                names = ", ".join(sorted(enabled)) or "none"
                raise RoutesError(
                    f"route '{name}': provider '{target.provider}' of '{target.public_id}' is "
                    f"not enabled (enabled: {names})",
                    name,
                )
        routes.append(Route(name, alias, config, targets))
    return RouteTable(routes)


def read_routes_file(path: Path) -> dict[str, RouteConfig]:
    """Routes from a YAML file: a ``routes:`` mapping (or the mapping itself)."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise RoutesError(f"{path}: cannot read ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        raise RoutesError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if document is None:
        return {}
    if isinstance(document, dict) and set(document) == {"routes"}:
        document = document["routes"] or {}
    if not isinstance(document, dict):
        raise RoutesError(f"{path}: expected a mapping of route names to routes")
    routes: dict[str, RouteConfig] = {}
    for name, body in document.items():
        try:
            routes[str(name)] = RouteConfig.model_validate(body)
        except ValidationError as error:
            raise RoutesError(f"{path}: route '{name}': {_first_problem(error)}") from None
    return routes


def _first_problem(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
