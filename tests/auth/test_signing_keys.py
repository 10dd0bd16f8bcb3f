from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.auth.conftest import PEPPER
from xrouter.auth.signing_keys import SigningKeys, kid_for, period_start
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


async def test_first_start_creates_the_current_and_next_keys(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock = Clock(datetime(2025, 6, 15, 12, tzinfo=UTC))
    keys = keys_at(sessions, clock)
    await keys.refresh()
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
    await asyncio.gather(first.refresh(), second.refresh())
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
    await keys.refresh()
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
    await keys_at(sessions, clock).refresh()
    other = keys_at(sessions, clock, pepper=b"another-pepper-0123456789abcdef")
    await other.refresh()
    assert other.jwks() == {"keys": []}
    assert "cannot be decrypted" in caplog.text
