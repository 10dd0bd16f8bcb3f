from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from xrouter.keys.cache import ActiveKey, KeyCache
from xrouter.keys.format import display_prefix, generate_key
from xrouter.keys.hashing import KeyHasher
from xrouter.keys.service import KeyChanges, KeyService
from xrouter.storage.database import create_engine, session_factory
from xrouter.storage.models import ApiKey, new_id

PEPPER = b"cache-test-pepper-0123456789abcd"
REFRESH = 0.05


class CountingSessions:
    """A session factory that counts its uses and can be made to fail."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self.calls = 0
        self.failing = False

    def __call__(self) -> AsyncSession:
        self.calls += 1
        if self.failing:
            raise OperationalError("SELECT", {}, ConnectionRefusedError("database is down"))
        return self._sessions()


@pytest.fixture
def counting(sessions: async_sessionmaker[AsyncSession]) -> CountingSessions:
    return CountingSessions(sessions)


@pytest.fixture
async def cache(counting: CountingSessions) -> AsyncIterator[KeyCache]:
    cache = KeyCache(counting, KeyHasher(PEPPER), REFRESH)  # type: ignore[arg-type]
    await cache.start()
    yield cache
    await cache.close()


@pytest.fixture
async def other_process(database_url: str) -> AsyncIterator[KeyService]:
    """A KeyService on its own engine, as the ``xrouter keys`` command would have."""
    engine = create_engine(database_url)
    yield KeyService(session_factory(engine), KeyHasher(PEPPER))
    await engine.dispose()


async def _eventually(condition: Callable[[], Any], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if condition():
                return
            await asyncio.sleep(REFRESH / 5)


async def test_start_loads_existing_active_keys(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    service = KeyService(sessions, KeyHasher(PEPPER))
    kept = await service.create("kept", owner="bob")
    revoked = await service.create("revoked")
    await service.revoke(revoked.info.id)

    cache = KeyCache(sessions, KeyHasher(PEPPER), 60)
    await cache.start()
    try:
        assert cache.lookup(kept.key) == ActiveKey(
            id=kept.info.id, name="kept", owner="bob", prefix=kept.info.prefix
        )
        assert cache.lookup(revoked.key) is None
        assert len(cache) == 1
    finally:
        await cache.close()


async def test_key_created_elsewhere_appears_and_revoked_disappears(
    cache: KeyCache, other_process: KeyService
) -> None:
    created = await other_process.create("from the cli")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await _eventually(lambda: cache.lookup(created.key) is not None)
    assert loop.time() - started < 2 * REFRESH + 1.0
    found = cache.lookup(created.key)
    assert found is not None
    assert found.id == created.info.id

    await other_process.revoke(created.info.id)
    await _eventually(lambda: cache.lookup(created.key) is None)


async def test_lookup_of_malformed_or_unknown_keys_does_no_io(
    cache: KeyCache, counting: CountingSessions
) -> None:
    await cache.close()  # no background refresh either: any call would be the lookup's
    calls = counting.calls
    for candidate in ["", "garbage", "sk-xr-v1-" + "A" * 49, generate_key()]:
        assert cache.lookup(candidate) is None
    assert counting.calls == calls


async def test_put_and_drop_apply_at_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    cache = KeyCache(sessions, KeyHasher(PEPPER), 60)
    await cache.start()
    service = KeyService(sessions, KeyHasher(PEPPER), cache=cache)
    try:
        created = await service.create("local")
        assert cache.lookup(created.key) is not None  # no refresh has run: put() did it
        await service.revoke(created.info.id)
        assert cache.lookup(created.key) is None
    finally:
        await cache.close()


async def test_refresh_survives_database_errors(
    cache: KeyCache,
    counting: CountingSessions,
    other_process: KeyService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    known = await other_process.create("known")
    await _eventually(lambda: cache.lookup(known.key) is not None)

    counting.failing = True
    with caplog.at_level(logging.WARNING, logger="xrouter.keys.cache"):
        failed_calls = counting.calls
        await _eventually(lambda: counting.calls >= failed_calls + 3)
    assert "API key refresh failed" in caplog.text
    assert cache.lookup(known.key) is not None  # the last good view is kept

    added = await other_process.create("added while down")
    counting.failing = False
    await _eventually(lambda: cache.lookup(added.key) is not None)


async def test_same_timestamp_writes_are_not_missed(
    cache: KeyCache, other_process: KeyService
) -> None:
    # Many writes in quick succession: some share a timestamp with the watermark.
    created = [await other_process.create(f"burst {n}") for n in range(20)]
    await _eventually(lambda: all(cache.lookup(c.key) is not None for c in created))


async def test_write_stamped_by_a_slow_clock_is_not_missed(
    cache: KeyCache, other_process: KeyService, sessions: async_sessionmaker[AsyncSession]
) -> None:
    newest = await other_process.create("newest")
    await _eventually(lambda: cache.lookup(newest.key) is not None)

    # Another instance whose clock runs two seconds behind writes a key "in the past".
    secret = generate_key()
    stamp = newest.info.updated_at - timedelta(seconds=2)
    async with sessions() as session, session.begin():
        session.add(
            ApiKey(
                id=new_id("key_"),
                name="skewed",
                prefix=display_prefix(secret),
                secret_hash=KeyHasher(PEPPER).digest(secret),
                owner=None,
                created_at=stamp,
                updated_at=stamp,
                revoked_at=None,
            )
        )
    await _eventually(lambda: cache.lookup(secret) is not None)


async def test_start_fails_when_the_database_is_down(counting: CountingSessions) -> None:
    counting.failing = True
    cache = KeyCache(counting, KeyHasher(PEPPER), REFRESH)  # type: ignore[arg-type]
    with pytest.raises(OperationalError):
        await cache.start()
    await cache.close()


async def test_a_refresh_read_before_a_local_change_does_not_undo_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A refresh whose query ran while this process changed a key (a PATCH enabling it) must
    not put back the version it read (still disabled): it reads again instead."""
    service = KeyService(sessions, KeyHasher(PEPPER))
    created = await service.create("toggled")
    await service.update(created.info.id, KeyChanges(disabled=True))
    cache = KeyCache(sessions, KeyHasher(PEPPER), 60)
    await cache.start()
    try:
        found = cache.lookup(created.key)
        assert found is not None
        assert found.disabled
        refresh = asyncio.create_task(cache.refresh())
        await asyncio.sleep(0)  # the refresh is now waiting for its query
        cache.put(replace(found, disabled=False), KeyHasher(PEPPER).digest(created.key))
        await refresh
        kept = cache.lookup(created.key)
        assert kept is not None
        assert not kept.disabled
    finally:
        await cache.close()
