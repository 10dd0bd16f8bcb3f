"""PostgreSQL goes away under load: requests keep being served (keys come from memory), usage
records wait in memory, and once the database is back every one of them is written exactly
once. The outage is a TCP proxy in front of the shared server that the test cuts and restores.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import make_url

from tests.gateway_fixtures import gateway_settings
from tests.servers import BackgroundLoop, RunningGateway
from tests.usage.cuttable_proxy import CuttableProxy
from tests.usage.usage_rows import usage_rows
from xrouter.emulators.server import RunningEmulator
from xrouter.storage.migrate import upgrade

CLIENTS = 4
REQUESTS_EACH = 10
BODY = {"model": "gigachat/GigaChat-2-Max", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture
def proxied(
    loop: BackgroundLoop,
    emulators: dict[str, RunningEmulator],
    postgres_url: str,
    tmp_path: Path,
) -> Iterator[tuple[RunningGateway, CuttableProxy, str]]:
    url = make_url(postgres_url)
    proxy = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
    loop.run(proxy.start())
    upgrade(postgres_url)
    through_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    settings = gateway_settings(
        tmp_path / "unused.db",
        emulators["gigachat"].url,
        emulators["yandex"].url,
        database_url=through_proxy,
    )
    running = RunningGateway(settings, loop)
    try:
        yield running, proxy, postgres_url
    finally:
        running.stop()
        loop.run(proxy.cut())


def test_requests_are_served_and_usage_kept_while_postgres_is_down(
    loop: BackgroundLoop, proxied: tuple[RunningGateway, CuttableProxy, str]
) -> None:
    gateway, proxy, direct_url = proxied
    created = gateway.create_key("outage")
    headers = {"Authorization": f"Bearer {created.key}"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as http:
        assert http.post("/v1/chat/completions", json=BODY).status_code == 200
        deadline = time.monotonic() + 10
        while usage_rows(direct_url, created.info.id) == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        loop.run(proxy.cut())
        ready = http.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] != "ok"
        statuses: list[int] = []

        def load() -> None:
            with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as own:
                for _ in range(REQUESTS_EACH):
                    statuses.append(own.post("/v1/chat/completions", json=BODY).status_code)

        clients = [threading.Thread(target=load) for _ in range(CLIENTS)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(60)
        assert statuses == [200] * (CLIENTS * REQUESTS_EACH)
        assert gateway.runtime.usage.pending >= CLIENTS * REQUESTS_EACH
        assert usage_rows(direct_url, created.info.id) == 1
        loop.run(proxy.start())
        expected = 1 + CLIENTS * REQUESTS_EACH
        deadline = time.monotonic() + 60
        while (written := usage_rows(direct_url, created.info.id)) < expected:
            assert time.monotonic() < deadline, f"{written} of {expected} usage records"
            time.sleep(0.2)
        assert written == expected
        assert http.get("/ready").status_code == 200
        assert gateway.runtime.usage.dropped == 0
