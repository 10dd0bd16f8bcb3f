"""The planner: routes, strategies, per-request preferences, capabilities, key restrictions and
breakers, driven directly (the weighted split over 2,000 plans is measured here)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from tests.gateway_fixtures import gateway_settings
from xrouter.errors import InvalidRequestError, ModelNotFoundError, PermissionDeniedError
from xrouter.gateway.wire import ChatCompletionRequest
from xrouter.keys.cache import ActiveKey
from xrouter.providers.registry import EmulatorAddresses, build_providers
from xrouter.providers.transport import Timeouts
from xrouter.routing.breaker import BreakerBoard, BreakerPolicy
from xrouter.routing.catalog import ModelCatalog
from xrouter.routing.planner import RoutePlanner, RoutingDefaults
from xrouter.routing.routes import RouteConfig, RouteTable, compile_routes
from xrouter.routing.strategies import LatencyTracker

KEY = ActiveKey(id="key_plain", name="plain", owner="alice", prefix="sk-xr-v1-abc")
ROUTES: dict[str, Any] = {
    "smart": {
        "targets": [
            {"model": "gigachat/GigaChat-2-Max", "timeouts": {"first_byte": 3}},
            "yandex/yandexgpt",
        ],
        "retries": 2,
        "timeouts": {"connect": 1.5},
    },
    "split": {
        "strategy": "weighted",
        "targets": [
            {"model": "gigachat/GigaChat-2", "weight": 7},
            {"model": "yandex/yandexgpt-lite", "weight": 3},
        ],
    },
    "cheap": {
        "strategy": "cost",
        "targets": [
            {"model": "gigachat/GigaChat-2-Max", "price": {"prompt": 1.0, "completion": 2.0}},
            {"model": "yandex/yandexgpt-lite", "price": {"prompt": 0.2, "completion": 0.2}},
        ],
    },
    "fast": {"strategy": "latency", "targets": ["gigachat/GigaChat-2", "yandex/yandexgpt"]},
    "small": {
        "targets": [
            {"model": "gigachat/GigaChat-2", "capabilities": {"context_length": 100}},
            {"model": "yandex/yandexgpt", "capabilities": {"tools": False, "max_output": 50}},
        ]
    },
    "staging": {
        "alias": "yandex/yandexgpt",
        "owners": ["staging"],
        "targets": ["yandex/yandexgpt:rc"],
    },
}

Factory = Callable[..., RoutePlanner]


@pytest.fixture
async def make_planner(tmp_path: Path) -> AsyncIterator[Factory]:
    settings = gateway_settings(tmp_path / "x.db", "http://127.0.0.1:9", "http://127.0.0.1:9")
    async with aiohttp.ClientSession() as session:
        providers = build_providers(settings, session, EmulatorAddresses())
        catalog = ModelCatalog(providers, 0)  # never refreshed: every model is possible
        table = compile_routes(
            {name: RouteConfig.model_validate(body) for name, body in ROUTES.items()}, providers
        )

        def make(**options: Any) -> RoutePlanner:
            defaults = RoutingDefaults(
                timeouts=Timeouts(connect=10, read=60, total=600),
                retries=0,
                deadline_seconds=30,
                key_providers=options.pop("key_providers", {}),
            )
            return RoutePlanner(
                providers,
                catalog,
                options.pop("routes", lambda: table),
                options.pop("breakers", BreakerBoard(BreakerPolicy())),
                options.pop("latency", LatencyTracker()),
                defaults,
                rng=random.Random(options.pop("seed", 1)),
            )

        yield make


def chat(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "smart", "messages": [{"role": "user", "content": "Привет"}], **fields}
    return msgspec.convert(body, ChatCompletionRequest)


def ids(planner: RoutePlanner, request: ChatCompletionRequest, key: ActiveKey = KEY) -> list[str]:
    return [t.key for t in planner.plan_chat(request, key).targets]


def test_a_route_expands_with_its_settings(make_planner: Factory) -> None:
    plan = make_planner().plan_chat(chat(), KEY)
    assert plan.route == "smart"
    assert [t.key for t in plan.targets] == ["gigachat/GigaChat-2-Max", "yandex/yandexgpt"]
    first, second = plan.targets
    assert (first.retries, first.timeouts.first_byte, first.timeouts.connect) == (2, 3, 1.5)
    assert (second.timeouts.first_byte, second.timeouts.connect, second.timeouts.read) == (
        None,
        1.5,
        60,
    )


def test_a_routes_targets_are_built_once_for_each_routing_table(make_planner: Factory) -> None:
    def table(retries: int) -> RouteTable:
        config = RouteConfig.model_validate(
            {"targets": ["gigachat/GigaChat-2"], "retries": retries}
        )
        return compile_routes({"smart": config}, ["gigachat"])

    current = table(1)
    planner = make_planner(routes=lambda: current)
    first = planner.plan_chat(chat(), KEY).primary
    assert planner.plan_chat(chat(), KEY).primary is first
    current = table(3)  # reloaded
    assert planner.plan_chat(chat(), KEY).primary.retries == 3


def test_a_plain_model_id_is_one_target(make_planner: Factory) -> None:
    plan = make_planner().plan_chat(chat(model="yandex/yandexgpt:rc"), KEY)
    assert plan.route is None
    assert [t.key for t in plan.targets] == ["yandex/yandexgpt:rc"]


def test_unknown_models_are_404(make_planner: Factory) -> None:
    with pytest.raises(ModelNotFoundError):
        make_planner().plan_chat(chat(model="openai/gpt-4o"), KEY)
    with pytest.raises(ModelNotFoundError):
        make_planner().plan_chat(chat(model="no-such-route"), KEY)


def test_weighted_split_over_2000_plans_is_within_5_percent(make_planner: Factory) -> None:
    planner = make_planner(seed=2024)
    request = chat(model="split")
    firsts = Counter(planner.plan_chat(request, KEY).primary.key for _ in range(2000))
    share = firsts["gigachat/GigaChat-2"] / 2000
    assert abs(share - 0.7) <= 0.05, firsts
    # The other target stays in the plan as the fallback.
    assert len(planner.plan_chat(request, KEY).targets) == 2


def test_lowest_cost_and_least_latency(make_planner: Factory) -> None:
    assert ids(make_planner(), chat(model="cheap"))[0] == "yandex/yandexgpt-lite"
    # Too short to count as a token and without max_tokens: the prices still decide.
    tiny = chat(model="cheap", messages=[{"role": "user", "content": "hi"}])
    assert ids(make_planner(), tiny)[0] == "yandex/yandexgpt-lite"
    latency = LatencyTracker()
    latency.observe("gigachat/GigaChat-2", 0.9)
    latency.observe("yandex/yandexgpt", 0.2)
    assert ids(make_planner(latency=latency), chat(model="fast")) == [
        "yandex/yandexgpt",
        "gigachat/GigaChat-2",
    ]


def test_models_list_follows_the_model(make_planner: Factory) -> None:
    request = chat(model="gigachat/GigaChat-2", models=["split", "gigachat/GigaChat-2"])
    assert ids(make_planner(seed=3), request)[0] == "gigachat/GigaChat-2"
    assert set(ids(make_planner(seed=3), request)) == {
        "gigachat/GigaChat-2",
        "yandex/yandexgpt-lite",
    }


def test_provider_preferences(make_planner: Factory) -> None:
    planner = make_planner()
    assert ids(planner, chat(provider={"order": ["yandex"]})) == [
        "yandex/yandexgpt",
        "gigachat/GigaChat-2-Max",
    ]
    assert ids(planner, chat(provider={"only": ["yandex"]})) == ["yandex/yandexgpt"]
    assert ids(planner, chat(provider={"ignore": ["yandex"]})) == ["gigachat/GigaChat-2-Max"]
    assert ids(planner, chat(provider={"allow_fallbacks": False})) == ["gigachat/GigaChat-2-Max"]
    assert ids(planner, chat(model="cheap", provider={"sort": "price"}))[0] == (
        "yandex/yandexgpt-lite"
    )
    with pytest.raises(InvalidRequestError) as caught:
        planner.plan_chat(chat(provider={"only": ["openai"]}), KEY)
    assert caught.value.param == "provider.only"


def test_capabilities_skip_targets_and_explain_when_none_is_left(make_planner: Factory) -> None:
    planner = make_planner()
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    plan = planner.plan_chat(chat(model="small", tools=[tool]), KEY)
    assert [t.key for t in plan.targets] == ["gigachat/GigaChat-2"]
    assert plan.skipped[0].reason == "incapable"
    long_prompt = "слово " * 400  # well over 100 tokens
    with pytest.raises(InvalidRequestError) as caught:
        planner.plan_chat(
            chat(model="small", messages=[{"role": "user", "content": long_prompt}], tools=[tool]),
            KEY,
        )
    message = caught.value.message
    assert caught.value.code == "no_capable_target"
    assert "gigachat/GigaChat-2 has a context of 100 tokens" in message
    assert "yandex/yandexgpt does not support tools" in message
    plan = planner.plan_chat(chat(model="small", max_tokens=80), KEY)
    assert [t.key for t in plan.targets] == ["gigachat/GigaChat-2"]


def test_key_provider_allow_list(make_planner: Factory) -> None:
    planner = make_planner(key_providers={"owner:alice": frozenset({"yandex"})})
    plan = planner.plan_chat(chat(), KEY)
    assert [t.key for t in plan.targets] == ["yandex/yandexgpt"]
    assert plan.skipped[0].reason == "key_forbids"
    with pytest.raises(PermissionDeniedError) as caught:
        planner.plan_chat(chat(model="gigachat/GigaChat-2"), KEY)
    assert caught.value.code == "provider_not_allowed"
    bob = ActiveKey(id="key_bob", name="bob", owner="bob", prefix="sk-xr-v1-def")
    assert len(planner.plan_chat(chat(), bob).targets) == 2


def test_key_model_allow_list_narrows_a_route(make_planner: Factory) -> None:
    key = ActiveKey(
        id="key_y", name="y", owner=None, prefix="sk-xr-v1-ghi", allowed_models=("yandex/*",)
    )
    assert ids(make_planner(), chat(), key) == ["yandex/yandexgpt"]


def test_an_alias_can_pin_a_version_for_some_owners(make_planner: Factory) -> None:
    staging = ActiveKey(id="key_s", name="s", owner="staging", prefix="sk-xr-v1-jkl")
    assert ids(make_planner(), chat(model="yandex/yandexgpt"), staging) == ["yandex/yandexgpt:rc"]
    assert ids(make_planner(), chat(model="yandex/yandexgpt")) == ["yandex/yandexgpt"]


def test_open_circuits_are_skipped_unless_every_target_is_open(make_planner: Factory) -> None:
    breakers = BreakerBoard(BreakerPolicy(min_requests=1, open_seconds=60))
    planner = make_planner(breakers=breakers)
    breakers.record("gigachat/GigaChat-2-Max", False)
    plan = planner.plan_chat(chat(), KEY)
    assert [t.key for t in plan.targets] == ["yandex/yandexgpt"]
    assert [(s.target, s.reason) for s in plan.skipped] == [
        ("gigachat/GigaChat-2-Max", "circuit_open")
    ]
    breakers.record("yandex/yandexgpt", False)
    plan = planner.plan_chat(chat(), KEY)
    assert plan.forced
    assert [t.key for t in plan.targets] == ["gigachat/GigaChat-2-Max", "yandex/yandexgpt"]
