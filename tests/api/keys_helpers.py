"""Users, management keys and API clients for the key management API tests."""

from __future__ import annotations

import time

import httpx

from tests.api.oauth_helpers import make_user
from tests.servers import RunningGateway
from xrouter.auth.users import UserInfo
from xrouter.keys.service import CreatedKey


def management_key(gateway: RunningGateway, owner: str | None) -> CreatedKey:
    service = gateway.runtime.key_service
    return gateway.loop.run(service.create("manager", owner, kind="management"))


def api_for(gateway: RunningGateway, key: str) -> httpx.Client:
    """An httpx client that sends ``key`` as its bearer credential."""
    return httpx.Client(
        base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def user_with_api(gateway: RunningGateway, *, admin: bool = False) -> tuple[UserInfo, httpx.Client]:
    """A new user and a client holding a management key of theirs."""
    user = make_user(gateway, admin=admin)
    return user, api_for(gateway, management_key(gateway, user.id).key)


def chat(
    gateway: RunningGateway, key: str, model: str = "gigachat/GigaChat-2-Max"
) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "Привет"}]}
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers=headers, timeout=30)


def wait_for(predicate: object, timeout: float = 5.0) -> None:
    """Poll ``predicate()`` until it is true (usage is written within a flush interval)."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
