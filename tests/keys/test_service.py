from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from xrouter.keys.cache import ActiveKey, KeyCache
from xrouter.keys.format import display_prefix, is_well_formed
from xrouter.keys.hashing import KeyHasher
from xrouter.keys.service import (
    InvalidKeyLimitError,
    InvalidKeyNameError,
    KeyNotFoundError,
    KeyService,
)
from xrouter.storage.models import ApiKey

PEPPER = b"service-test-pepper-0123456789ab"


@pytest.fixture
def service(sessions: async_sessionmaker[AsyncSession]) -> KeyService:
    return KeyService(sessions, KeyHasher(PEPPER))


async def test_create_returns_the_secret_once_and_stores_only_its_digest(
    service: KeyService, sessions: async_sessionmaker[AsyncSession]
) -> None:
    created = await service.create("ci", owner="alice")

    assert is_well_formed(created.key)
    assert created.info.id.startswith("key_")
    assert len(created.info.id) == 20
    assert created.info.name == "ci"
    assert created.info.owner == "alice"
    assert created.info.prefix == display_prefix(created.key)
    assert created.info.active
    assert created.info.created_at.utcoffset() is not None
    async with sessions() as session:
        row = (await session.scalars(select(ApiKey))).one()
    assert row.secret_hash == KeyHasher(PEPPER).digest(created.key)
    stored = [str(value) for value in vars(row).values()]
    assert not any(created.key in value for value in stored)


async def test_reprs_hold_no_secret(service: KeyService) -> None:
    created = await service.create("ci")
    digest = KeyHasher(PEPPER).digest(created.key)
    for text in (repr(created), str(created), repr(created.info)):
        assert created.key not in text
        assert digest not in text


async def test_list_is_oldest_first_and_includes_revoked(service: KeyService) -> None:
    first = await service.create("first")
    second = await service.create("second")
    await service.revoke(first.info.id)

    listed = await service.list()

    assert [info.id for info in listed] == [first.info.id, second.info.id]
    assert [info.active for info in listed] == [False, True]


async def test_revoke_bumps_updated_at_and_is_idempotent(service: KeyService) -> None:
    created = await service.create("temp")

    revoked = await service.revoke(created.info.id)
    again = await service.revoke(created.info.id)

    assert revoked.revoked_at is not None
    assert revoked.updated_at == revoked.revoked_at
    assert revoked.updated_at > created.info.updated_at
    assert again == revoked


async def test_revoke_unknown_id(service: KeyService) -> None:
    with pytest.raises(KeyNotFoundError) as caught:
        await service.revoke("key_doesnotexist00")
    assert caught.value.status == 404
    assert "key_doesnotexist00" in caught.value.message


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
async def test_invalid_names_are_refused(service: KeyService, name: str) -> None:
    with pytest.raises(InvalidKeyNameError):
        await service.create(name)


async def test_create_with_limits_reaches_the_row_and_the_cache_view(
    service: KeyService, sessions: async_sessionmaker[AsyncSession]
) -> None:
    created = await service.create("limited", rpm=60, tpm=10_000, tpd=None)

    assert (created.info.rpm, created.info.tpm, created.info.tpd) == (60, 10_000, None)
    async with sessions() as session:
        row = (await session.scalars(select(ApiKey))).one()
    active = ActiveKey.from_row(row)
    assert (active.rpm, active.tpm, active.tpd) == (60, 10_000, None)


async def test_keys_without_limits_default_to_none(service: KeyService) -> None:
    created = await service.create("plain")
    assert (created.info.rpm, created.info.tpm, created.info.tpd) == (None, None, None)
    legacy = ActiveKey(id="key_x", name="n", owner=None, prefix="p")
    assert (legacy.rpm, legacy.tpm, legacy.tpd) == (None, None, None)


async def test_update_limits_changes_only_what_is_given(service: KeyService) -> None:
    created = await service.create("k", rpm=10, tpm=100, tpd=1000)

    updated = await service.update_limits(created.info.id, rpm=20)
    assert (updated.rpm, updated.tpm, updated.tpd) == (20, 100, 1000)
    assert updated.updated_at > created.info.updated_at

    cleared = await service.update_limits(created.info.id, tpm=None)
    assert (cleared.rpm, cleared.tpm, cleared.tpd) == (20, None, 1000)
    listed = await service.list()
    assert (listed[0].rpm, listed[0].tpm, listed[0].tpd) == (20, None, 1000)


async def test_update_limits_reaches_the_local_cache(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    hasher = KeyHasher(PEPPER)
    cache = KeyCache(sessions, hasher, refresh_seconds=3600)
    await cache.start()
    try:
        service = KeyService(sessions, hasher, cache=cache)
        created = await service.create("cached", rpm=5)
        assert cache.lookup(created.key) == ActiveKey(
            id=created.info.id, name="cached", owner=None, prefix=created.info.prefix, rpm=5
        )
        await service.update_limits(created.info.id, rpm=7, tpd=70)
        found = cache.lookup(created.key)
        assert found is not None
        assert (found.rpm, found.tpm, found.tpd) == (7, None, 70)
    finally:
        await cache.close()


async def test_update_limits_of_unknown_key(service: KeyService) -> None:
    with pytest.raises(KeyNotFoundError):
        await service.update_limits("key_doesnotexist00", rpm=1)


@pytest.mark.parametrize(("param", "value"), [("rpm", 0), ("tpm", -5), ("tpd", 2**31)])
async def test_out_of_range_limits_are_refused(service: KeyService, param: str, value: int) -> None:
    with pytest.raises(InvalidKeyLimitError) as caught:
        await service.create("bad", **{param: value})
    assert caught.value.param == param
    assert caught.value.status == 400
    created = await service.create("good")
    with pytest.raises(InvalidKeyLimitError):
        await service.update_limits(created.info.id, **{param: value})
