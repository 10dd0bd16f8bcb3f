"""The access-token signing keys: RS256 key pairs kept in the database, rotated on a fixed
schedule.

Time is cut into rotation periods. The key of a period is named after the instant it becomes
active (``rs256-20250301T000000Z``), so instances agree on it: each tries to insert it and all
but one insert do nothing. The key of the *next* period is created and published ahead of time,
so every instance knows a key before any instance signs with it. A key stays in the JWKS until
the last token it could have signed has expired.

Private keys are stored encrypted (AES-256-GCM) under a key derived from the pepper: a copy of
the database alone cannot mint tokens.

The keys, and the cryptography they need (``token_crypto``), are loaded only once OAuth is in
use: when a signing key or an OAuth client exists in the database (checked at start and on
every refresh), or when this instance is about to sign or registers a client (``activate``). No
token can exist before then, and a worker serving API keys only never loads them.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from xrouter.auth.hkdf import hkdf_sha256
from xrouter.background import stop_tasks
from xrouter.storage.models import OAuthClient, SigningKey, utc_now

if TYPE_CHECKING:
    from joserfc.jwk import RSAKey

    from xrouter.auth.token_crypto import KeyEncryption

logger = logging.getLogger(__name__)

ALGORITHM = "RS256"
REFRESH_SECONDS = 60.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CRYPTO_MODULE = "xrouter.auth.token_crypto"


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
        self._sealing_key = hkdf_sha256(pepper, b"xrouter oauth signing keys")
        self._encryption: KeyEncryption | None = None
        self._activation = asyncio.Lock()
        self._rotation = rotation
        self._token_lifetime = token_lifetime
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._loaded: dict[str, LoadedKey] = {}
        self._published: dict[str, LoadedKey] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the keys if OAuth is in use (see the module docstring), then keep them fresh."""
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name="xrouter-signing-keys")

    @property
    def active(self) -> bool:
        """Whether OAuth is in use here: the cryptography is loaded, the keys kept fresh."""
        return self._encryption is not None

    async def activate(self) -> None:
        """Load the cryptography, create this period's and the next period's keys if needed
        and load them; once, however many callers wait for it together."""
        if self._encryption is not None and self._published:
            return
        async with self._activation:
            if self._encryption is None:
                await self._load_cryptography()
            if not self._published:
                await self.refresh()

    async def close(self) -> None:
        await stop_tasks(self._task)
        self._task = None

    def signer(self) -> LoadedKey:
        """The key to sign with now: the newest one already active."""
        now = self._clock()
        active = [key for key in self._published.values() if key.active_from <= now]
        if not active:
            raise RuntimeError("no active signing key; SigningKeys.activate() was not awaited")
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
        """Once OAuth is in use: make sure the current and next periods have keys, then reload
        every key. Before that, only look whether it has come into use."""
        if self._encryption is None:
            if not await self._in_use():
                return
            await self._load_cryptography()
        now = self._clock()
        current = period_start(now, self._rotation)
        async with self._sessions() as session, session.begin():
            for active_from in (current, current + self._rotation):
                await self._ensure(session, active_from)
        async with self._sessions() as session:
            rows = (await session.scalars(select(SigningKey))).all()
        # Reading a private key checks it, tens of milliseconds each: not on the event loop.
        opened = await asyncio.to_thread(self._open_new, rows)
        self._apply(rows, opened, now)

    async def _ensure(self, session: AsyncSession, active_from: datetime) -> None:
        from xrouter.auth.token_crypto import generate_key

        kid = kid_for(active_from)
        if await session.get(SigningKey, kid) is not None:
            return
        assert self._encryption is not None
        # Generating an RSA key takes tens of milliseconds of CPU: not on the event loop.
        public, sealed = await asyncio.to_thread(generate_key, kid, self._encryption)
        values = {
            "kid": kid,
            "algorithm": ALGORITHM,
            "public_jwk": public,
            "private_jwk_encrypted": sealed,
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

    def _open_new(self, rows: Sequence[SigningKey]) -> dict[str, LoadedKey]:
        opened = (self._decrypt(row) for row in rows if row.kid not in self._loaded)
        return {key.kid: key for key in opened if key is not None}

    def _apply(
        self, rows: Sequence[SigningKey], opened: dict[str, LoadedKey], now: datetime
    ) -> None:
        loaded: dict[str, LoadedKey] = {}
        for row in rows:
            known = self._loaded.get(row.kid) or opened.get(row.kid)
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
        from xrouter.auth.token_crypto import open_key

        assert self._encryption is not None
        try:
            key = open_key(row.kid, row.private_jwk_encrypted, self._encryption)
        except ValueError as error:
            logger.error(
                "signing key %s cannot be decrypted (was the pepper changed?): %s",
                row.kid,
                type(error).__name__,
            )
            return None
        return LoadedKey(row.kid, key, json.loads(row.public_jwk), row.active_from)

    async def _in_use(self) -> bool:
        async with self._sessions() as session:
            found = await session.scalar(
                select(exists(select(SigningKey.kid)) | exists(select(OAuthClient.id)))
            )
        return bool(found)

    async def _load_cryptography(self) -> None:
        # Importing takes a moment of CPU: in a thread, the event loop serves meanwhile.
        crypto = await asyncio.to_thread(importlib.import_module, _CRYPTO_MODULE)
        self._encryption = crypto.KeyEncryption(self._sealing_key)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                await self.refresh()
            except Exception:
                logger.warning("signing key refresh failed; keeping the loaded keys", exc_info=True)
