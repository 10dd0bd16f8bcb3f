from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from xrouter.keys.format import display_prefix, is_well_formed
from xrouter.keys.hashing import KeyHasher
from xrouter.keys.service import InvalidKeyNameError, KeyNotFoundError, KeyService
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
