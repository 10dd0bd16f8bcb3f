"""The gateway's in-memory view of active API keys: authenticating a request does no I/O.

A background task polls ``api_keys.updated_at`` and applies inserts, changes and revocations
(with Redis, ``KeyEvents`` also wakes it at once when another instance changes a key). Each poll
re-reads a few seconds before the newest change it has seen, so a write stamped by a slightly
slow clock on another instance, or sharing a timestamp with one already seen, is not missed
(re-applying a change is harmless). A periodic full reload also catches rows deleted by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from xrouter.background import stop_tasks
from xrouter.keys.format import is_well_formed
from xrouter.keys.hashing import KeyHasher
from xrouter.keys.repository import ApiKeyRepository
from xrouter.storage.models import ApiKey

logger = logging.getLogger(__name__)

INFERENCE = "inference"
MANAGEMENT = "management"
KEY_KINDS = (INFERENCE, MANAGEMENT)

DEFAULT_OVERLAP_SECONDS = 5.0
DEFAULT_FULL_RELOAD_SECONDS = 300.0
QUERY_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class ActiveKey:
    """An authenticated caller's key: enough to attribute and limit a request."""

    id: str
    name: str
    owner: str | None
    prefix: str
    # Per-key limits (None: the configured default applies).
    rpm: int | None = None
    tpm: int | None = None
    tpd: int | None = None
    kind: str = INFERENCE
    disabled: bool = False
    # Unix time after which the key is refused; None: never.
    expires_at: float | None = None
    # Model id patterns ("gigachat/*"); None: every model.
    allowed_models: tuple[str, ...] | None = None
    monthly_budget_rub: float | None = None
    # The key's owner opted in to logging its prompts and completions.
    log_content: bool = False

    @classmethod
    def from_row(cls, row: ApiKey) -> ActiveKey:
        return cls(
            id=row.id,
            name=row.name,
            owner=row.owner,
            prefix=row.prefix,
            rpm=row.rpm,
            tpm=row.tpm,
            tpd=row.tpd,
            kind=row.kind or INFERENCE,
            disabled=bool(row.disabled),
            expires_at=row.expires_at.timestamp() if row.expires_at is not None else None,
            allowed_models=tuple(row.allowed_models) if row.allowed_models is not None else None,
            monthly_budget_rub=row.monthly_budget_rub,
            log_content=bool(row.log_content),
        )


class KeyCache:
    """Active keys indexed by digest, kept fresh off the request path."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        hasher: KeyHasher,
        refresh_seconds: float,
        *,
        overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
        full_reload_seconds: float = DEFAULT_FULL_RELOAD_SECONDS,
    ) -> None:
        self._sessions = session_factory
        self._hasher = hasher
        self._refresh_seconds = refresh_seconds
        self._overlap = timedelta(seconds=overlap_seconds)
        self._full_reload_seconds = full_reload_seconds
        self._keys: dict[str, ActiveKey] = {}
        self._digest_by_id: dict[str, str] = {}
        self._watermark: datetime | None = None
        # Counts this process's own puts and drops: rows read while one happened may predate
        # it, and applying them would bring back the old key (say, still disabled).
        self._local_changes = 0
        self._loaded_at = 0.0
        self._last_success = 0.0
        self._failures = 0
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None

    async def start(self) -> None:
        """Load every active key (errors propagate), then keep refreshing in the background."""
        await self._load_all()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="xrouter-key-cache-refresh")

    def refresh_soon(self) -> None:
        """Refresh now instead of at the next tick: another instance changed a key."""
        if self._wake is not None:
            self._wake.set()

    async def close(self) -> None:
        """Stop the background refresh."""
        await stop_tasks(self._task)
        self._task = None

    def lookup(self, key: str) -> ActiveKey | None:
        """The active key matching ``key``, or None. Synchronous; never touches the database.

        A plain dict lookup by digest is safe against timing attacks: the caller controls the
        key, not its HMAC, so how long the lookup takes reveals nothing about stored digests.
        """
        if not is_well_formed(key):
            return None
        return self._keys.get(self._hasher.digest(key))

    def put(self, key: ActiveKey, secret_hash: str) -> None:
        """Add or replace a key this process just created or changed (no wait for the next
        refresh)."""
        self._local_changes += 1
        self._put(key, secret_hash)

    def drop(self, key_id: str) -> None:
        """Forget a key this process just revoked (no wait for the next refresh)."""
        self._local_changes += 1
        self._drop(key_id)

    def _put(self, key: ActiveKey, secret_hash: str) -> None:
        self._drop(key.id)
        self._keys[secret_hash] = key
        self._digest_by_id[key.id] = secret_hash

    def _drop(self, key_id: str) -> None:
        digest = self._digest_by_id.pop(key_id, None)
        if digest is not None:
            self._keys.pop(digest, None)

    def __len__(self) -> int:
        return len(self._keys)

    def budgeted_ids(self) -> list[str]:
        """Ids of the cached keys that have a monthly budget (whose spend must be shared)."""
        return [key.id for key in self._keys.values() if key.monthly_budget_rub is not None]

    @property
    def seconds_since_refresh(self) -> float:
        """How old the cached view is: for metrics and readiness checks."""
        return time.monotonic() - self._last_success

    async def refresh(self) -> None:
        """Apply changes made since the last refresh (a full reload now and then)."""
        if time.monotonic() - self._loaded_at >= self._full_reload_seconds:
            await self._load_all()
            return
        since = self._watermark - self._overlap if self._watermark is not None else None
        changes = self._local_changes
        async with asyncio.timeout(QUERY_TIMEOUT_SECONDS), self._sessions() as session:
            rows = await ApiKeyRepository(session).changed_since(since)
        if self._read_again(changes):
            return
        self._apply(rows)
        self._last_success = time.monotonic()

    def _read_again(self, changes: int) -> bool:
        """Whether this process changed a key since ``changes`` was read: then the rows just
        read may be older than that change, and the next refresh (right away) reads again."""
        if self._local_changes == changes:
            return False
        self.refresh_soon()
        return True

    async def _load_all(self) -> None:
        changes = self._local_changes
        async with asyncio.timeout(QUERY_TIMEOUT_SECONDS), self._sessions() as session:
            rows = await ApiKeyRepository(session).active_all()
        if self._wake is not None and self._read_again(changes):
            return
        by_digest: dict[str, ActiveKey] = {}
        digest_by_id: dict[str, str] = {}
        for row in rows:
            by_digest[row.secret_hash] = ActiveKey.from_row(row)
            digest_by_id[row.id] = row.secret_hash
        # Swapped in one step: a lookup sees the old view or the new one, never half of each.
        self._keys, self._digest_by_id = by_digest, digest_by_id
        self._advance_watermark(rows)
        self._loaded_at = self._last_success = time.monotonic()

    def _apply(self, rows: Sequence[ApiKey]) -> None:
        for row in rows:
            if row.revoked_at is None:
                self._put(ActiveKey.from_row(row), row.secret_hash)
            else:
                self._drop(row.id)
        self._advance_watermark(rows)

    def _advance_watermark(self, rows: Iterable[ApiKey]) -> None:
        newest = max((row.updated_at for row in rows), default=None)
        if newest is not None and (self._watermark is None or newest > self._watermark):
            self._watermark = newest

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._refresh_seconds):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.refresh()
            except Exception:
                # Keep serving the last good view; the next tick retries.
                self._failures += 1
                logger.warning(
                    "API key refresh failed (%d in a row); keeping %d cached keys",
                    self._failures,
                    len(self._keys),
                    exc_info=self._failures == 1,
                )
            else:
                if self._failures:
                    logger.info("API key refresh recovered after %d failures", self._failures)
                self._failures = 0
