"""Keys issued to apps by the OpenRouter-compatible key flow are marked with the app, and only
those are listed on the apps page."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx

from tests.api.keys_helpers import user_with_api
from tests.api.oauth_helpers import (
    challenge_of,
    hidden_fields,
    new_verifier,
    query_of,
    signed_in_browser,
)
from tests.log_secrets import register_secret
from tests.servers import RunningGateway

CALLBACK = "https://notes.example:8443/openrouter/callback?from=settings"
ORIGIN = "https://notes.example:8443"


def key_from_flow(gateway: RunningGateway, browser: httpx.Client) -> str:
    verifier = new_verifier()
    params = {
        "callback_url": CALLBACK,
        "code_challenge": challenge_of(verifier),
        "code_challenge_method": "S256",
    }
    consent = browser.get("/auth?" + urlencode(params))
    assert consent.status_code == 200, consent.text
    approved = browser.post("/auth", data={**hidden_fields(consent.text), "decision": "allow"})
    assert approved.status_code == 303, approved.text
    code = query_of(approved.headers["location"])["code"]
    exchanged = httpx.post(
        f"{gateway.url}/api/v1/auth/keys", json={"code": code, "code_verifier": verifier}
    )
    assert exchanged.status_code == 200, exchanged.text
    key: str = exchanged.json()["key"]
    register_secret(key)
    return key


def test_apps_page_lists_only_keys_issued_to_apps(gateway: RunningGateway) -> None:
    user, api = user_with_api(gateway)  # the management key is a key made elsewhere too
    with api, signed_in_browser(gateway, user) as browser:
        made_by_hand = api.post("/api/keys", json={"name": "deploy-script"})
        assert made_by_hand.status_code == 201, made_by_hand.text
        assert made_by_hand.json()["created_by_app"] is None
        key_from_flow(gateway, browser.http)

        listed = {key["name"]: key for key in api.get("/api/keys").json()["data"]}
        issued = listed[f"App at {ORIGIN}"]
        assert issued["created_by_app"] == ORIGIN
        assert api.get(f"/api/keys/{issued['id']}").json()["created_by_app"] == ORIGIN
        assert {name for name, key in listed.items() if key["created_by_app"] is None} == {
            "deploy-script",
            *(name for name, key in listed.items() if key["kind"] == "management"),
        }

        page = browser.http.get("/ui/apps")
        assert page.status_code == 200
        section = page.text.split("<h2>", 1)[1]
        assert f'<td class="key-app">{ORIGIN}</td>' in section
        assert f"<code>{issued['prefix']}</code>" in section
        assert f'value="{issued["id"]}"' in section
        for key in listed.values():
            if key["created_by_app"] is None:
                assert key["id"] not in section
                assert key["name"] not in section


def test_created_by_app_is_read_only(gateway: RunningGateway) -> None:
    _, api = user_with_api(gateway)
    with api:
        refused = api.post("/api/keys", json={"name": "fake", "created_by_app": ORIGIN})
        assert refused.status_code == 422, refused.text
        key = api.post("/api/keys", json={"name": "plain"}).json()
        patched = api.patch(f"/api/keys/{key['id']}", json={"created_by_app": ORIGIN})
        assert patched.status_code == 422, patched.text
        assert api.get(f"/api/keys/{key['id']}").json()["created_by_app"] is None
