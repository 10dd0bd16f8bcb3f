"""The key management API: every endpoint, and who may use it."""

from __future__ import annotations

import httpx
import pytest

from tests.api.keys_helpers import api_for, chat, management_key, user_with_api, wait_for
from tests.api.oauth_helpers import make_user, signed_in_browser
from tests.servers import RunningGateway


def test_create_shows_the_secret_once_and_the_key_works(gateway: RunningGateway) -> None:
    user, api = user_with_api(gateway)
    with api:
        created = api.post(
            "/api/keys",
            json={
                "name": "ci",
                "rpm": 60,
                "tpd": 100000,
                "monthly_budget_rub": 500,
                "allowed_models": ["gigachat/*"],
                "expires_at": "2099-01-01T00:00:00+03:00",
            },
        )
        assert created.status_code == 201, created.text
        assert created.headers["cache-control"] == "no-store"
        body = created.json()
        assert body["key"].startswith("sk-xr-v1-")
        assert body["owner"] == user.id
        assert body["status"] == "active"
        assert body["limits"] == {"rpm": 60, "tpm": None, "tpd": 100000}
        assert body["allowed_models"] == ["gigachat/*"]
        assert body["monthly_budget_rub"] == 500
        assert body["expires_at"].startswith("2098-12-31T21:00:00")
        again = api.get(f"/api/keys/{body['id']}").json()
        assert "key" not in again
        assert again["prefix"] == body["prefix"]
    assert chat(gateway, body["key"]).status_code == 200


def test_list_search_and_status_filter(gateway: RunningGateway) -> None:
    _, api = user_with_api(gateway)
    with api:
        first = api.post("/api/keys", json={"name": "alpha build"}).json()
        second = api.post("/api/keys", json={"name": "beta deploy"}).json()
        api.delete(f"/api/keys/{second['id']}")
        names = [key["name"] for key in api.get("/api/keys").json()["data"]]
        assert names == ["manager", "alpha build", "beta deploy"]
        found = api.get("/api/keys", params={"q": "ALPHA"}).json()["data"]
        assert [key["id"] for key in found] == [first["id"]]
        revoked = api.get("/api/keys", params={"status": "revoked"}).json()["data"]
        assert [key["id"] for key in revoked] == [second["id"]]


def test_patch_renames_changes_limits_disables_and_rotates(gateway: RunningGateway) -> None:
    _, api = user_with_api(gateway)
    with api:
        key = api.post("/api/keys", json={"name": "old", "rpm": 5, "tpm": 500}).json()
        changed = api.patch(
            f"/api/keys/{key['id']}",
            json={"name": "new", "rpm": 10, "tpm": None, "allowed_models": ["yandex/*"]},
        ).json()
        assert changed["name"] == "new"
        assert changed["limits"] == {"rpm": 10, "tpm": None, "tpd": None}
        assert changed["allowed_models"] == ["yandex/*"]
        disabled = api.patch(f"/api/keys/{key['id']}", json={"disabled": True}).json()
        assert disabled["status"] == "disabled"
        refused = chat(gateway, key["key"], "yandex/yandexgpt")
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "key_disabled"
        api.patch(f"/api/keys/{key['id']}", json={"disabled": False})
        assert chat(gateway, key["key"], "yandex/yandexgpt").status_code == 200
        rotated = api.patch(f"/api/keys/{key['id']}", json={"rotate": True}).json()
        assert rotated["id"] == key["id"]
        assert rotated["key"] != key["key"]
    assert chat(gateway, key["key"], "yandex/yandexgpt").status_code == 401
    assert chat(gateway, rotated["key"], "yandex/yandexgpt").status_code == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": ""}, "name"),
        ({"name": "x", "rpm": 0}, "rpm"),
        ({"name": "x", "monthly_budget_rub": -1}, "monthly_budget_rub"),
        ({"name": "x", "allowed_models": ["not a pattern"]}, "allowed_models"),
        ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "x", "expires_at": "2099-01-01T00:00:00"}, "expires_at"),
        ({"name": "x", "colour": "red"}, "colour"),
    ],
)
def test_bad_input_names_the_field(
    gateway: RunningGateway, body: dict[str, object], param: str
) -> None:
    _, api = user_with_api(gateway)
    with api:
        response = api.post("/api/keys", json=body)
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["param"] == param


def test_delete_revokes_and_the_key_is_refused(gateway: RunningGateway) -> None:
    _, api = user_with_api(gateway)
    with api:
        key = api.post("/api/keys", json={"name": "temp"}).json()
        assert chat(gateway, key["key"]).status_code == 200
        revoked = api.delete(f"/api/keys/{key['id']}").json()
        assert revoked["status"] == "revoked"
        assert api.patch(f"/api/keys/{key['id']}", json={"name": "x"}).status_code == 400
    assert chat(gateway, key["key"]).status_code == 401


def test_usage_series_counts_requests_tokens_and_cost(gateway: RunningGateway) -> None:
    _, api = user_with_api(gateway)
    with api:
        key = api.post("/api/keys", json={"name": "metered"}).json()
        replies = [chat(gateway, key["key"]).json() for _ in range(3)]
        tokens = sum(reply["usage"]["total_tokens"] for reply in replies)

        def totals() -> dict[str, object]:
            body = api.get(f"/api/keys/{key['id']}/usage", params={"granularity": "minute"})
            assert body.status_code == 200, body.text
            return dict(body.json()["totals"])

        wait_for(lambda: totals()["requests"] == 3)
        summed = totals()
        assert summed["total_tokens"] == tokens
        assert summed["errors"] == 0
        assert float(summed["cost_rub"]) > 0  # type: ignore[arg-type]
        series = api.get(f"/api/keys/{key['id']}/usage", params={"granularity": "hour"}).json()
        assert len(series["data"]) == 48
        assert sum(point["requests"] for point in series["data"]) == 3
        day = api.get(f"/api/keys/{key['id']}/usage", params={"granularity": "day"}).json()
        assert day["data"][-1]["requests"] == 3
        listed = api.get(f"/api/keys/{key['id']}").json()
        assert listed["last_used_at"] is not None
        assert listed["spent_this_month_rub"] == pytest.approx(summed["cost_rub"], rel=1e-6)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"granularity": "week"}, "granularity"),
        ({"granularity": "minute", "from": "2020-01-01T00:00:00Z"}, "granularity"),
        ({"from": "2030-01-01T00:00:00Z", "to": "2029-01-01T00:00:00Z"}, "from"),
    ],
)
def test_usage_range_errors(gateway: RunningGateway, params: dict[str, str], param: str) -> None:
    _, api = user_with_api(gateway)
    with api:
        key = api.post("/api/keys", json={"name": "k"}).json()
        response = api.get(f"/api/keys/{key['id']}/usage", params=params)
    assert response.status_code in (400, 422)
    assert response.json()["error"]["param"] == param


def test_a_user_cannot_see_or_touch_another_users_keys(gateway: RunningGateway) -> None:
    _, alice = user_with_api(gateway)
    _, bob = user_with_api(gateway)
    with alice, bob:
        secret = alice.post("/api/keys", json={"name": "alice's"}).json()
        key_id = secret["id"]
        assert key_id not in [key["id"] for key in bob.get("/api/keys").json()["data"]]
        for method, path, body in (
            ("GET", f"/api/keys/{key_id}", None),
            ("PATCH", f"/api/keys/{key_id}", {"disabled": True}),
            ("DELETE", f"/api/keys/{key_id}", None),
            ("GET", f"/api/keys/{key_id}/usage", None),
            ("GET", f"/api/v1/keys/{key_id}", None),
            ("PATCH", f"/api/v1/keys/{key_id}", {"disabled": True}),
            ("DELETE", f"/api/v1/keys/{key_id}", None),
        ):
            response = bob.request(method, path, json=body)
            # The same answer as for a key that does not exist: ids cannot be probed.
            assert response.status_code == 404, (method, path, response.text)
            missing = bob.request(method, path.replace(key_id, "key_0000000000000000"), json=body)
            assert missing.status_code == 404
            assert response.json()["error"]["code"] == missing.json()["error"]["code"]
        assert (
            bob.post("/api/keys", json={"name": "for alice", "owner": secret["owner"]}).status_code
            == 403
        )
        assert alice.get(f"/api/keys/{key_id}").json()["status"] == "active"
    assert chat(gateway, secret["key"]).status_code == 200


def test_an_admin_sees_and_manages_everyones_keys(gateway: RunningGateway) -> None:
    user, api = user_with_api(gateway)
    _, admin = user_with_api(gateway, admin=True)
    with api, admin:
        key = api.post("/api/keys", json={"name": "team"}).json()
        everyone = [item["id"] for item in admin.get("/api/keys").json()["data"]]
        assert key["id"] in everyone
        mine = admin.get("/api/keys", params={"owner": user.id}).json()["data"]
        assert {item["owner"] for item in mine} == {user.id}
        assert admin.patch(f"/api/keys/{key['id']}", json={"rpm": 3}).status_code == 200
        made = admin.post("/api/keys", json={"name": "for user", "owner": user.id}).json()
        assert made["owner"] == user.id
        assert made["id"] in [item["id"] for item in api.get("/api/keys").json()["data"]]


def test_credentials_that_may_not_manage_keys(gateway: RunningGateway) -> None:
    user = make_user(gateway)
    inference = gateway.loop.run(gateway.runtime.key_service.create("plain", user.id))
    with httpx.Client(base_url=gateway.url, timeout=30) as anonymous:
        assert anonymous.get("/api/keys").status_code == 401
        assert anonymous.post("/api/keys", json={"name": ""}).status_code == 401
    with api_for(gateway, inference.key) as api:
        refused = api.get("/api/keys")
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "inference_key"
        assert api.post("/api/keys", json={"name": "x"}).status_code == 403
    with api_for(gateway, "sk-xr-v1-" + "A" * 49) as api:
        assert api.get("/api/keys").status_code == 401


def test_management_keys_are_refused_on_v1(gateway: RunningGateway) -> None:
    user = make_user(gateway)
    manager = management_key(gateway, user.id)
    response = chat(gateway, manager.key)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "management_key"
    models = httpx.get(
        f"{gateway.url}/v1/models", headers={"Authorization": f"Bearer {manager.key}"}
    )
    assert models.status_code == 403


def test_a_session_manages_keys_with_its_csrf_token(gateway: RunningGateway) -> None:
    user = make_user(gateway)
    with signed_in_browser(gateway, user) as browser:
        assert browser.http.get("/api/keys").status_code == 200
        without = browser.http.post("/api/keys", json={"name": "web"})
        assert without.status_code == 403
        assert without.json()["error"]["code"] == "csrf"
        token = gateway.runtime.auth.ui_sessions.csrf_token(_as_connection(browser.http))
        made = browser.http.post("/api/keys", json={"name": "web"}, headers={"x-csrf-token": token})
        assert made.status_code == 201, made.text
        assert made.json()["owner"] == user.id


def test_current_key_reports_its_limits_and_what_is_left(gateway: RunningGateway) -> None:
    _, api = user_with_api(gateway)
    with api:
        key = api.post(
            "/api/keys", json={"name": "self", "rpm": 10, "monthly_budget_rub": 100}
        ).json()
    assert chat(gateway, key["key"]).status_code == 200
    with api_for(gateway, key["key"]) as own:
        body = own.get("/api/key").json()
        assert body["id"] == key["id"]
        assert body["rate_limits"]["rpm"]["limit"] == 10
        assert body["rate_limits"]["rpm"]["remaining"] == 9
        assert body["monthly_budget_rub"] == 100
        assert 0 < body["budget_remaining_rub"] < 100
        assert "key" not in body


class _Cookies:
    def __init__(self, cookies: dict[str, str]) -> None:
        self.cookies = cookies


def _as_connection(http: httpx.Client) -> object:
    """Enough of a request for ``UiSessions.csrf_token``: this browser's cookies."""
    return _Cookies({name: value for name, value in http.cookies.items()})


def test_content_logging_is_off_unless_asked_for_and_reaches_the_gateway(
    gateway: RunningGateway,
) -> None:
    _, api = user_with_api(gateway)
    with api:
        plain = api.post("/api/keys", json={"name": "plain"}).json()
        assert plain["log_content"] is False
        logged = api.post("/api/keys", json={"name": "logged", "log_content": True}).json()
        assert logged["log_content"] is True
        assert gateway.runtime.keys.lookup(logged["key"]).log_content  # type: ignore[union-attr]
        assert api.get(f"/api/keys/{logged['id']}").json()["log_content"] is True
        off = api.patch(f"/api/keys/{logged['id']}", json={"log_content": False})
        assert off.json()["log_content"] is False
        assert not gateway.runtime.keys.lookup(logged["key"]).log_content  # type: ignore[union-attr]
        # Other changes leave the flag alone; null is refused rather than read as "off".
        api.patch(f"/api/keys/{plain['id']}", json={"log_content": True})
        renamed = api.patch(f"/api/keys/{plain['id']}", json={"name": "renamed"}).json()
        assert renamed["log_content"] is True
        refused = api.patch(f"/api/keys/{plain['id']}", json={"log_content": None})
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "log_content"
