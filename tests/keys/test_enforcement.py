"""A key's own rules on the proxied path: model allow-list, expiry, monthly budget, and its
rate and token quotas (enforced by the limiter). Each trips at the right count and says which
limit it was."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.api.keys_helpers import chat, user_with_api, wait_for
from tests.servers import RunningGateway
from xrouter.storage.database import session_factory
from xrouter.usage.spend import MonthlySpend


def _new_key(gateway: RunningGateway, **settings: object) -> dict[str, object]:
    _, api = user_with_api(gateway)
    with api:
        response = api.post("/api/keys", json={"name": "enforced", **settings})
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_model_allow_list(gateway: RunningGateway) -> None:
    key = _new_key(gateway, allowed_models=["gigachat/*", "yandex/yandexgpt"])
    secret = str(key["key"])
    assert chat(gateway, secret, "gigachat/GigaChat-2-Max").status_code == 200
    assert chat(gateway, secret, "yandex/yandexgpt:rc").status_code == 200
    refused = chat(gateway, secret, "yandex/yandexgpt-lite")
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "model_not_allowed"
    assert error["param"] == "model"
    assert "yandex/yandexgpt-lite" in error["message"]
    assert "gigachat/*, yandex/yandexgpt" in error["message"]
    models = httpx.get(
        f"{gateway.url}/v1/models", headers={"Authorization": f"Bearer {secret}"}
    ).json()["data"]
    ids = {model["id"] for model in models}
    assert ids
    assert all(i.startswith("gigachat/") or i.split(":")[0] == "yandex/yandexgpt" for i in ids)
    # A model the key may not use cannot be retrieved either: it is not in its list.
    headers = {"Authorization": f"Bearer {secret}"}
    allowed = httpx.get(f"{gateway.url}/v1/models/yandex/yandexgpt", headers=headers)
    assert allowed.status_code == 200
    hidden = httpx.get(f"{gateway.url}/v1/models/yandex/yandexgpt-lite", headers=headers)
    assert hidden.status_code == 404
    assert hidden.json()["error"]["code"] == "model_not_found"


def test_expired_key_is_refused(gateway: RunningGateway) -> None:
    expires = datetime.now(UTC) + timedelta(seconds=1.5)
    key = _new_key(gateway, expires_at=expires.isoformat())
    assert chat(gateway, str(key["key"])).status_code == 200
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.05)
    refused = chat(gateway, str(key["key"]))
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "key_expired"


def test_monthly_budget_trips_at_the_right_request(gateway: RunningGateway) -> None:
    # The emulator answers the same prompt with the same tokens: every request costs the same.
    probe = _new_key(gateway)
    first = chat(gateway, str(probe["key"])).json()["usage"]
    price = 1950 / 1_000_000  # the built-in price of GigaChat-2-Max, per token
    cost = first["total_tokens"] * price
    key = _new_key(gateway, monthly_budget_rub=round(cost * 2.5, 6))
    secret = str(key["key"])
    for _ in range(3):  # spent 0, 1x and 2x the cost before each: all under 2.5x
        assert chat(gateway, secret).status_code == 200
    refused = chat(gateway, secret)
    assert refused.status_code == 402
    error = refused.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert error["type"] == "insufficient_quota"
    assert f"Limit {cost * 2.5:.2f} RUB" in error["message"]
    assert f"Used {cost * 3:.2f} RUB" in error["message"]
    resets = gateway.runtime.spend.resets_at().astimezone(gateway.runtime.spend.calendar.zone)
    assert f"resets at {resets.isoformat(timespec='minutes')}" in error["message"]
    assert resets.day == 1
    assert resets.hour == 0
    assert int(refused.headers["retry-after"]) > 0
    # Raising the budget lets it through again at once.
    _, api = user_with_api(gateway, admin=True)
    with api:
        api.patch(f"/api/keys/{key['id']}", json={"monthly_budget_rub": 1000})
    assert chat(gateway, secret).status_code == 200


def test_budget_counts_recorded_spend_after_a_restart(gateway: RunningGateway) -> None:
    key = _new_key(gateway, monthly_budget_rub=1000)
    assert chat(gateway, str(key["key"])).status_code == 200
    spend = gateway.runtime.spend
    spent = spend.spent(str(key["id"]))
    assert spent > 0
    wait_for(lambda: gateway.runtime.usage.pending == 0)
    # What a fresh instance would load: the month's rollups hold the same spend.
    fresh = MonthlySpend(session_factory(gateway.runtime.engine), spend.calendar)
    gateway.loop.run(fresh.start())
    try:
        assert fresh.spent(str(key["id"])) == pytest.approx(spent)
    finally:
        gateway.loop.run(fresh.close())


def test_requests_per_minute_trip_at_the_limit(gateway: RunningGateway) -> None:
    key = _new_key(gateway, rpm=3)
    for _ in range(3):
        assert chat(gateway, str(key["key"])).status_code == 200
    refused = chat(gateway, str(key["key"]))
    assert refused.status_code == 429
    message = refused.json()["error"]["message"]
    assert f"requests per minute (RPM) of key {key['id']}: Limit 3, Used 3" in message


def test_token_quotas_name_their_limit(gateway: RunningGateway) -> None:
    for name, description in (("tpm", "tokens per minute (TPM)"), ("tpd", "tokens per day (TPD)")):
        key = _new_key(gateway, **{name: 50})
        body = {
            "model": "gigachat/GigaChat-2-Max",
            "messages": [{"role": "user", "content": "Привет"}],
            "max_tokens": 100,
        }
        refused = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key['key']}"},
        )
        assert refused.status_code == 429
        assert f"{description} of key {key['id']}: Limit 50" in refused.json()["error"]["message"]


def test_disabled_key_recovers_when_enabled(gateway: RunningGateway) -> None:
    _, api = user_with_api(gateway)
    with api:
        key = api.post("/api/keys", json={"name": "toggle"}).json()
        api.patch(f"/api/keys/{key['id']}", json={"disabled": True})
        refused = chat(gateway, key["key"])
        assert refused.status_code == 403
        assert "disabled" in refused.json()["error"]["message"]
        api.patch(f"/api/keys/{key['id']}", json={"disabled": False})
    assert chat(gateway, key["key"]).status_code == 200
