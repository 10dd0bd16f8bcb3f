"""A serving process, and only one, freezes its startup objects out of later collections and
collects its youngest generation less often."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from xrouter.app import XRouterApp
from xrouter.gc_pauses import YOUNG_GENERATION_THRESHOLD, prepare_collector
from xrouter.settings import Settings
from xrouter.storage.migrate import upgrade


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Give the test process its collector back as it was: frozen objects are never
    collected."""
    thresholds = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_frozen_objects_are_out_of_reach_later_garbage_is_not(unfrozen: None) -> None:
    kept = _Cycle()
    prepare_collector()
    assert gc.get_freeze_count() > 0
    # gc.get_objects() lists what the collections walk; frozen objects are not among them.
    assert all(tracked is not kept for tracked in gc.get_objects())
    later = _Cycle()
    gone = weakref.ref(later)
    del later
    # A cycle made after the freeze is still the collector's to free.
    gc.collect()
    assert gone() is None


def test_garbage_cycles_are_still_collected_without_being_asked(unfrozen: None) -> None:
    prepare_collector()
    assert gc.get_threshold()[0] == YOUNG_GENERATION_THRESHOLD
    first = _Cycle()
    gone = weakref.ref(first)
    del first
    # More garbage than the threshold: the collector runs by itself and frees the cycles.
    for _ in range(2 * YOUNG_GENERATION_THRESHOLD):
        _Cycle()
    assert gone() is None


async def _start_and_stop(app: XRouterApp) -> None:
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


@pytest.mark.parametrize("serving", [True, False])
def test_a_serving_process_prepares_its_collector_after_startup(
    serving: bool, tmp_path: Path, unfrozen: None
) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
        key_pepper="test-pepper-0123456789abcdef",
    )
    upgrade(settings.database_url)
    asyncio.run(_start_and_stop(XRouterApp(settings, freeze_after_start=serving)))
    assert (gc.get_freeze_count() > 0) is serving
    assert (gc.get_threshold()[0] == YOUNG_GENERATION_THRESHOLD) is serving
