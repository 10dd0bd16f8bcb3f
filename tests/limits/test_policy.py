from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from xrouter.gateway.wire import ChatCompletionRequest
from xrouter.keys.cache import ActiveKey
from xrouter.limits.policy import Limit, LimitPolicy, prompt_tokens
from xrouter.providers.base import ModelTarget
from xrouter.settings import RateQuota, Settings

TARGET = ModelTarget("gigachat", "GigaChat-Pro", "2.0")


def make_settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(key_pepper_file=tmp_path / "pepper", **values)  # type: ignore[arg-type]


def key(**limits: int | None) -> ActiveKey:
    return ActiveKey(id="key_1", name="n", owner=None, prefix="p", **limits)


def test_nothing_configured_means_no_limits(tmp_path: Path) -> None:
    assert LimitPolicy(make_settings(tmp_path)).limits_for(key(), TARGET) == ()


def test_a_keys_own_limits_replace_the_defaults(tmp_path: Path) -> None:
    policy = LimitPolicy(make_settings(tmp_path, rate_limit_key_rpm=60, rate_limit_key_tpd=1000))
    assert list(policy.limits_for(key(rpm=5, tpm=700), TARGET)) == [
        Limit("key", "key_1", "rpm", 5),
        Limit("key", "key_1", "tpm", 700),
        Limit("key", "key_1", "tpd", 1000),
    ]


def test_limits_are_cached_per_key_object_and_follow_a_changed_key(tmp_path: Path) -> None:
    policy = LimitPolicy(make_settings(tmp_path, rate_limit_key_rpm=60))
    active = key(tpm=700)
    first = policy.limits_for(active, TARGET)
    assert policy.limits_for(active, TARGET) is first
    # The key reloaded with new limits: a new object, whose limits are its own.
    changed = policy.limits_for(key(tpm=900), TARGET)
    assert [limit.limit for limit in changed] == [60, 900]
    assert [limit.limit for limit in policy.limits_for(active, TARGET)] == [60, 700]


def test_owner_model_and_provider_limits(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        rate_limit_user_tpm=5000,
        rate_limit_models={"gigachat/GigaChat-Pro": RateQuota(rpm=30)},
        rate_limit_providers={"gigachat": RateQuota(rpm=100, tpd=10**6)},
    )
    owned = ActiveKey(id="key_1", name="n", owner="alice", prefix="p")
    assert list(LimitPolicy(settings).limits_for(owned, TARGET)) == [
        Limit("user", "alice", "tpm", 5000),
        Limit("model", "gigachat/GigaChat-Pro", "rpm", 30),
        Limit("provider", "gigachat", "rpm", 100),
        Limit("provider", "gigachat", "tpd", 10**6),
    ]
    # Another provider's request is not held by GigaChat's limits; no owner, no user limit.
    assert LimitPolicy(settings).limits_for(key(), ModelTarget("yandex", "yandexgpt")) == ()


def test_limits_come_from_the_environment_as_json(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XROUTER_RATE_LIMIT_PROVIDERS", '{"yandex": {"rpm": 7}}')
    monkeypatch.setenv("XROUTER_RATE_LIMIT_KEY_TPM", "900")
    settings = make_settings(tmp_path)
    assert settings.rate_limit_providers == {"yandex": RateQuota(rpm=7)}
    assert settings.rate_limit_key_tpm == 900
    monkeypatch.setenv("XROUTER_RATE_LIMIT_BACKEND", "redis")
    with pytest.raises(ValueError, match="needs XROUTER_REDIS_URL"):
        make_settings(tmp_path)


def test_token_reservations(tmp_path: Path) -> None:
    policy = LimitPolicy(make_settings(tmp_path, rate_limit_completion_tokens=500))
    body = b'{"model":"gigachat/GigaChat","messages":[{"role":"user","content":"hi"}]}'
    chat = msgspec.json.decode(body, type=ChatCompletionRequest)
    assert policy.chat_tokens(chat, len(body)) == prompt_tokens(len(body)) + 500
    limited = msgspec.json.decode(
        body[:-1] + b',"max_tokens":100,"max_completion_tokens":40,"n":3}',
        type=ChatCompletionRequest,
    )
    assert policy.chat_tokens(limited, 400) == 100 + 3 * 40
    assert policy.embedding_tokens(9) == 3
    assert prompt_tokens(0) == 1
