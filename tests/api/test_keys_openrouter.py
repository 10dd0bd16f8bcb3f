"""The OpenRouter-compatible key API and generation lookup, and the admin user API."""

from __future__ import annotations

import httpx
import pytest

from tests.api.keys_helpers import api_for, chat, user_with_api, wait_for
from tests.api.oauth_helpers import make_user
from tests.servers import RunningGateway


def test_openrouter_key_lifecycle(gateway: RunningGateway) -> None:
    _, api = user_with_api(gateway)
    with api:
        created = api.post("/api/v1/keys", json={"name": "script", "limit": 250})
        assert created.status_code == 201, created.text
        body = created.json()
        key_hash, secret = body["data"]["hash"], body["key"]
        assert body["data"]["limit"] == 250
        assert body["data"]["limit_reset"] == "monthly"
        assert body["data"]["disabled"] is False
        assert chat(gateway, secret).status_code == 200
        listed = api.get("/api/v1/keys").json()["data"]
        assert key_hash in [item["hash"] for item in listed]
        patched = api.patch(
            f"/api/v1/keys/{key_hash}", json={"name": "renamed", "disabled": True, "limit": None}
        ).json()["data"]
        assert (patched["name"], patched["disabled"], patched["limit"]) == ("renamed", True, None)
        assert chat(gateway, secret).status_code == 403
        assert api.get(f"/api/v1/keys/{key_hash}").json()["data"]["name"] == "renamed"
        assert api.delete(f"/api/v1/keys/{key_hash}").json() == {"deleted": True}
        assert api.get(f"/api/v1/keys/{key_hash}").status_code == 404
        assert key_hash not in [item["hash"] for item in api.get("/api/v1/keys").json()["data"]]
    assert chat(gateway, secret).status_code == 401


def test_openrouter_limit_reset_other_than_monthly_is_refused(gateway: RunningGateway) -> None:
    _, api = user_with_api(gateway)
    with api:
        response = api.post("/api/v1/keys", json={"name": "x", "limit": 5, "limit_reset": "daily"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "limit_reset"


def test_current_key_openrouter_shape(gateway: RunningGateway) -> None:
    _, api = user_with_api(gateway)
    with api:
        key = api.post("/api/keys", json={"name": "k", "rpm": 30, "monthly_budget_rub": 10}).json()
        manager = api.get("/api/v1/key").json()["data"]
        assert manager["is_management_key"] is True
    with api_for(gateway, key["key"]) as own:
        data = own.get("/api/v1/key").json()["data"]
    assert data["label"] == key["prefix"]
    assert data["limit"] == 10
    assert data["limit_remaining"] == 10
    assert data["is_free_tier"] is False
    assert data["is_management_key"] is False
    assert data["rate_limit"] == {"requests": 30, "interval": "1m"}


def test_generation_is_the_responses_usage_record(gateway: RunningGateway) -> None:
    user, api = user_with_api(gateway)
    with api:
        key = api.post("/api/keys", json={"name": "gen"}).json()
    response = chat(gateway, key["key"])
    reply = response.json()
    generation_id = reply["id"]
    assert response.headers["x-generation-id"] == generation_id
    with api_for(gateway, key["key"]) as own:
        # At once (from the recorder's buffer) and after the write (from the database).
        first = own.get("/api/v1/generation", params={"id": generation_id})
        assert first.status_code == 200, first.text
        wait_for(lambda: not gateway.runtime.usage.pending_record(generation_id))
        data = own.get("/api/v1/generation", params={"id": generation_id}).json()["data"]
    assert data == first.json()["data"]
    assert data["id"] == generation_id
    assert data["model"] == "gigachat/GigaChat-2-Max"
    assert data["provider_name"] == "gigachat"
    assert data["tokens_prompt"] == reply["usage"]["prompt_tokens"]
    assert data["tokens_completion"] == reply["usage"]["completion_tokens"]
    assert data["api_key_hash"] == key["id"]
    assert data["user_id"] == user.id
    assert data["total_cost"] > 0
    assert data["currency"] == "RUB"
    [record] = gateway.usage_records(response.headers["x-request-id"])
    assert record.id == generation_id
    assert record.cost_rub == pytest.approx(data["total_cost"], abs=1e-6)
    assert record.user_id == user.id


def test_generations_of_others_are_not_found(gateway: RunningGateway) -> None:
    _, alice = user_with_api(gateway)
    _, bob = user_with_api(gateway)
    with alice, bob:
        key = alice.post("/api/keys", json={"name": "a"}).json()
        other = bob.post("/api/keys", json={"name": "b"}).json()
        generation_id = chat(gateway, key["key"]).json()["id"]
        assert alice.get("/api/v1/generation", params={"id": generation_id}).status_code == 200
        assert bob.get("/api/v1/generation", params={"id": generation_id}).status_code == 404
    with api_for(gateway, other["key"]) as stranger:
        assert stranger.get("/api/v1/generation", params={"id": generation_id}).status_code == 404
        assert stranger.get("/api/v1/generation", params={"id": "nope"}).status_code == 404


def test_error_responses_carry_a_generation_id_too(gateway: RunningGateway) -> None:
    _, api = user_with_api(gateway)
    with api:
        key = api.post("/api/keys", json={"name": "e"}).json()
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={"model": "gigachat/GigaChat-2-Max", "messages": [], "stop": "x"},
            headers={"Authorization": f"Bearer {key['key']}"},
        )
    assert response.status_code == 400
    # Refused before a provider was called: nothing was recorded, so there is no id to look up.
    assert "x-generation-id" not in response.headers


def test_admin_user_routes(gateway: RunningGateway) -> None:
    _, admin = user_with_api(gateway, admin=True)
    user, api = user_with_api(gateway)
    with admin, api:
        assert api.get("/api/admin/users").status_code == 403
        assert (
            api.post(
                "/api/admin/users", json={"email": "x@example.com", "password": "p"}
            ).status_code
            == 403
        )
        assert api.patch(f"/api/admin/users/{user.id}", json={"disabled": True}).status_code == 403
        key = api.post("/api/keys", json={"name": "doomed"}).json()
        users = admin.get("/api/admin/users").json()["data"]
        row = next(item for item in users if item["id"] == user.id)
        assert row["active_keys"] == 2  # the management key and this one
        email = f"new-{user.id.lower()}@example.com"
        made = admin.post(
            "/api/admin/users", json={"email": email, "password": "a long enough password"}
        )
        assert made.status_code == 201, made.text
        assert made.json()["email"] == email
        disabled = admin.patch(f"/api/admin/users/{user.id}", json={"disabled": True}).json()
        assert disabled["disabled"] is True
        # Disabling a user stops every key they own.
        assert chat(gateway, key["key"]).status_code == 403
        assert admin.get(f"/api/keys/{key['id']}").json()["status"] == "disabled"
        assert (
            admin.patch("/api/admin/users/usr_unknown", json={"disabled": True}).status_code == 404
        )
    anonymous = httpx.get(f"{gateway.url}/api/admin/users")
    assert anonymous.status_code == 401


def test_an_admin_cannot_lock_themselves_out(gateway: RunningGateway) -> None:
    admin_user, admin = user_with_api(gateway, admin=True)
    with admin:
        response = admin.patch(f"/api/admin/users/{admin_user.id}", json={"is_admin": False})
    assert response.status_code == 400
    assert make_user(gateway) is not None
