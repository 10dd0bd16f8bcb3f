"""The access-token signing keys: RS256 key pairs generated on first start and kept in the
database, rotated on a fixed schedule.

Time is cut into rotation periods. The key of a period is named after the instant it becomes
active (``rs256-20250301T000000Z``), so instances starting together agree on it: each tries to
insert it and all but one insert do nothing. The key of the *next* period is created and
published ahead of time, so every instance knows a key before any instance signs with it. A key
stays in the JWKS until the last token it could have signed has expired.

Private keys are stored encrypted (AES-256-GCM) under a key derived from the pepper: a copy of
the database alone cannot mint tokens.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc.jwk import RSAKey
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from xrouter.background import stop_tasks
from xrouter.storage.models import SigningKey, utc_now

logger = logging.getLogger(__name__)

ALGORITHM = "RS256"
RSA_KEY_BITS = 2048
REFRESH_SECONDS = 60.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class LoadedKey:
    """A usable signing key: the private key for signing, the public JWK for the JWKS."""

    kid: str
    key: RSAKey
    public_jwk: dict[str, Any]
    active_from: datetime


def period_start(now: datetime, rotation: timedelta) -> datetime:
    """The start of the rotation period that contains ``now``."""
    periods = (now - _EPOCH) // rotation
    return _EPOCH + periods * rotation


def kid_for(active_from: datetime) -> str:
    return "rs256-" + active_from.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


class KeyEncryption:
    """AES-256-GCM under a key derived from the pepper with HKDF-SHA-256."""

    def __init__(self, pepper: bytes) -> None:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"xrouter oauth signing keys"
        ).derive(pepper)
        self._aead = AESGCM(derived)

    def encrypt(self, kid: str, plaintext: bytes) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext, kid.encode())
        return base64.b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, kid: str, stored: str) -> bytes:
        raw = base64.b64decode(stored)
        return self._aead.decrypt(raw[:12], raw[12:], kid.encode())


class SigningKeys:
    """The keys this instance signs with and accepts, refreshed in the background."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        pepper: bytes,
        *,
        rotation: timedelta,
        token_lifetime: timedelta,
        refresh_seconds: float = REFRESH_SECONDS,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._sessions = session_factory
        self._encryption = KeyEncryption(pepper)
        self._rotation = rotation
        self._token_lifetime = token_lifetime
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._loaded: dict[str, LoadedKey] = {}
        self._published: dict[str, LoadedKey] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Create this period's and the next period's keys if needed, load them, keep fresh."""
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name="xrouter-signing-keys")

    async def close(self) -> None:
        await stop_tasks(self._task)
        self._task = None

    def signer(self) -> LoadedKey:
        """The key to sign with now: the newest one already active."""
        now = self._clock()
        active = [key for key in self._published.values() if key.active_from <= now]
        if not active:
            raise RuntimeError("no active signing key; SigningKeys.start() was not awaited")
        return max(active, key=lambda key: key.active_from)

    def verification_key(self, kid: str) -> RSAKey | None:
        """The published key named ``kid``, or None (an unknown or retired key)."""
        loaded = self._published.get(kid)
        return loaded.key if loaded is not None else None

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The public keys as a JWK Set (RFC 7517 §5)."""
        ordered = sorted(self._published.values(), key=lambda key: key.active_from)
        return {"keys": [dict(key.public_jwk) for key in ordered]}

    async def refresh(self) -> None:
        """Make sure the current and next periods have keys, then reload every key."""
        now = self._clock()
        current = period_start(now, self._rotation)
        async with self._sessions() as session, session.begin():
            for active_from in (current, current + self._rotation):
                await self._ensure(session, active_from)
        async with self._sessions() as session:
            rows = (await session.scalars(select(SigningKey))).all()
        self._apply(rows, now)

    async def _ensure(self, session: AsyncSession, active_from: datetime) -> None:
        kid = kid_for(active_from)
        if await session.get(SigningKey, kid) is not None:
            return
        key = RSAKey.generate_key(
            RSA_KEY_BITS, parameters={"kid": kid, "alg": ALGORITHM, "use": "sig"}, private=True
        )
        private = json.dumps(key.as_dict(private=True)).encode()
        values = {
            "kid": kid,
            "algorithm": ALGORITHM,
            "public_jwk": json.dumps(key.as_dict(private=False)),
            "private_jwk_encrypted": self._encryption.encrypt(kid, private),
            "created_at": utc_now(),
            "active_from": active_from,
        }
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        # Another instance may insert the same period's key at the same moment: keep theirs.
        await session.execute(
            dialect.insert(SigningKey)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["kid"])
        )
        logger.info("created token signing key %s (active from %s)", kid, active_from.isoformat())

    def _apply(self, rows: Sequence[SigningKey], now: datetime) -> None:
        loaded: dict[str, LoadedKey] = {}
        for row in rows:
            known = self._loaded.get(row.kid)
            if known is None:
                known = self._decrypt(row)
            if known is not None:
                loaded[row.kid] = known
        ordered = sorted(loaded.values(), key=lambda key: key.active_from)
        published: dict[str, LoadedKey] = {}
        for index, key in enumerate(ordered):
            successor = ordered[index + 1] if index + 1 < len(ordered) else None
            if successor is None or successor.active_from > now:
                published[key.kid] = key
                continue
            # Replaced at ``successor.active_from`` (plus the refresh delay of slow instances):
            # its last token expires one token lifetime later.
            retired = successor.active_from + timedelta(seconds=2 * self._refresh_seconds)
            if retired + self._token_lifetime > now:
                published[key.kid] = key
        self._loaded, self._published = loaded, published

    def _decrypt(self, row: SigningKey) -> LoadedKey | None:
        try:
            private = json.loads(self._encryption.decrypt(row.kid, row.private_jwk_encrypted))
            key = RSAKey.import_key(private)
        except (InvalidTag, ValueError) as error:
            logger.error(
                "signing key %s cannot be decrypted (was the pepper changed?): %s",
                row.kid,
                type(error).__name__,
            )
            return None
        return LoadedKey(row.kid, key, json.loads(row.public_jwk), row.active_from)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                await self.refresh()
            except Exception:
                logger.warning("signing key refresh failed; keeping the loaded keys", exc_info=True)
