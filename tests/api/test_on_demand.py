"""The probes and metrics are answered as the control plane would, before it is built; any
other path builds it, once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.serving_imports import imported_of
from xrouter.api.on_demand import OnDemandControlPlane
from xrouter.runtime import Runtime
from xrouter.settings import Settings


@pytest.fixture
def control_plane(tmp_path: Path) -> OnDemandControlPlane:
    # A runtime that was never started: the probes must answer as the control plane does then.
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    return OnDemandControlPlane(Runtime(settings))


async def _get(app: object, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://xrouter") as client:
        return await client.get(path)


@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics"])
async def test_probes_answer_as_the_control_plane_without_building_it(
    control_plane: OnDemandControlPlane, path: str
) -> None:
    lean = await _get(control_plane, path)
    assert control_plane._app is None

    built = await _get(await control_plane.build(), path)
    assert (lean.status_code, lean.headers["content-type"]) == (
        built.status_code,
        built.headers["content-type"],
    )
    assert lean.content == built.content


async def test_other_paths_build_the_control_plane_once(
    control_plane: OnDemandControlPlane,
) -> None:
    first, second = await asyncio.gather(
        _get(control_plane, "/openapi.json"), _get(control_plane, "/no/such/page")
    )
    assert first.status_code == 200
    assert "/ready" in first.json()["paths"]
    assert second.status_code == 404
    assert set(second.json()["error"]) == {"message", "type", "param", "code"}
    app = control_plane._app
    assert app is not None
    assert await control_plane.build() is app


async def test_probes_other_than_get_go_to_the_control_plane(
    control_plane: OnDemandControlPlane,
) -> None:
    transport = httpx.ASGITransport(app=control_plane)
    async with httpx.AsyncClient(transport=transport, base_url="http://xrouter") as client:
        response = await client.post("/health")
    assert response.status_code == 405
    assert control_plane._app is not None


def test_serving_imports_no_control_plane_until_it_is_used() -> None:
    assert imported_of({"fastapi", "jinja2"}) == []
