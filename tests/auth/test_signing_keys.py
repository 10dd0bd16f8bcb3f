from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.auth.conftest import PEPPER
from xrouter.auth.clients import ClientService
from xrouter.auth.signing_keys import SigningKeys, kid_for, period_start
from xrouter.keys.hashing import KeyHasher
from xrouter.storage.models import SigningKey

ROTATION = timedelta(days=30)
LIFETIME = timedelta(days=365)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def keys_at(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, pepper: bytes = PEPPER
) -> SigningKeys:
    return SigningKeys(sessions, pepper, rotation=ROTATION, token_lifetime=LIFETIME, clock=clock)


async def test_first_activation_creates_the_current_and_next_keys(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock = Clock(datetime(2025, 6, 15, 12, tzinfo=UTC))
    keys = keys_at(sessions, clock)
    await keys.activate()
    current = period_start(clock.now, ROTATION)
    assert keys.signer().kid == kid_for(current)
    published = [key["kid"] for key in keys.jwks()["keys"]]
    assert published == [kid_for(current), kid_for(current + ROTATION)]
    async with sessions() as session:
        rows = (await session.scalars(select(SigningKey))).all()
    for row in rows:
        # Stored encrypted: no private RSA parameter appears in clear.
        assert '"d"' not in row.private_jwk_encrypted
        assert "d" not in json.loads(row.public_jwk)


async def test_instances_starting_together_agree_on_the_keys(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock = Clock(datetime(2025, 6, 15, tzinfo=UTC))
    first, second = keys_at(sessions, clock), keys_at(sessions, clock)
    await asyncio.gather(first.activate(), second.activate())
    assert first.jwks() == second.jwks()
    assert first.signer().kid == second.signer().kid
    async with sessions() as session:
        assert len((await session.scalars(select(SigningKey))).all()) == 2


async def test_rotation_keeps_old_keys_until_their_tokens_expire(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    start = datetime(2025, 1, 10, tzinfo=UTC)
    clock = Clock(start)
    keys = keys_at(sessions, clock)
    await keys.activate()
    first = keys.signer().kid
    clock.now = start + ROTATION
    await keys.refresh()
    second = keys.signer().kid
    assert second != first
    assert keys.verification_key(first) is not None  # tokens it signed are still live
    clock.now = start + ROTATION * 2 + LIFETIME
    await keys.refresh()
    assert keys.verification_key(first) is None
    assert first not in {key["kid"] for key in keys.jwks()["keys"]}
    assert keys.verification_key(keys.signer().kid) is not None


async def test_a_different_pepper_cannot_use_the_stored_keys(
    sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(datetime(2025, 6, 15, tzinfo=UTC))
    await keys_at(sessions, clock).activate()
    other = keys_at(sessions, clock, pepper=b"another-pepper-0123456789abcdef")
    await other.refresh()
    assert other.jwks() == {"keys": []}
    assert "cannot be decrypted" in caplog.text


async def test_no_keys_are_made_or_loaded_before_oauth_is_in_use(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    keys = keys_at(sessions, Clock(datetime(2025, 6, 15, tzinfo=UTC)))
    await keys.start()
    try:
        assert not keys.active
        assert keys.jwks() == {"keys": []}
        with pytest.raises(RuntimeError, match="activate"):
            keys.signer()
        async with sessions() as session:
            assert (await session.scalars(select(SigningKey))).all() == []
    finally:
        await keys.close()


async def test_a_registered_client_brings_the_keys_to_every_instance(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock = Clock(datetime(2025, 6, 15, tzinfo=UTC))
    registering, other = keys_at(sessions, clock), keys_at(sessions, clock)
    await other.refresh()
    await ClientService(sessions, KeyHasher(PEPPER), registering).create(
        "App", ["https://app.example/cb"]
    )
    assert registering.active
    kid = registering.signer().kid
    assert not other.active
    # The other instance learns it on its next refresh, as a new rotation period's key.
    await other.refresh()
    assert other.active
    assert other.verification_key(kid) is not None
    assert other.jwks() == registering.jwks()


async def test_an_instance_starting_after_a_client_exists_holds_the_keys(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock = Clock(datetime(2025, 6, 15, tzinfo=UTC))
    await ClientService(sessions, KeyHasher(PEPPER)).create("App", ["https://app.example/cb"])
    keys = keys_at(sessions, clock)
    await keys.refresh()
    assert keys.active
    assert keys.signer().kid == kid_for(period_start(clock.now, ROTATION))


async def test_concurrent_activations_share_one(
    sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "xrouter.auth.signing_keys")
    keys = keys_at(sessions, Clock(datetime(2025, 6, 15, tzinfo=UTC)))
    await asyncio.gather(*(keys.activate() for _ in range(5)))
    assert len(keys.jwks()["keys"]) == 2
    assert caplog.text.count("created token signing key") == 2
