"""Usage records, written in batches off the request path.

``record`` only appends to an in-memory queue (pricing the request and counting its cost
towards the key's monthly spend on the way). A background task writes the queue in batches,
one INSERT each, together with the per-key rollups of exactly the rows that INSERT added. A
batch leaves the queue only once its transaction has committed, so a failed write is retried
rather than lost; every event gets its id when it is recorded and the INSERT skips ids already
present, so a retry after an ambiguous failure (committed, but the acknowledgement was lost)
never writes a row twice, nor counts it twice in the rollups.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from itertools import islice
from typing import Any

import msgspec
from sqlalchemy import Insert, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from xrouter.storage.models import UsageRecord, new_id, utc_now
from xrouter.usage.periods import Calendar
from xrouter.usage.pricing import PriceTable
from xrouter.usage.rollups import write_rollups
from xrouter.usage.spend import MonthlySpend

logger = logging.getLogger(__name__)

USAGE_ID_PREFIX = "usage_"
# Random characters that make one recorder's ids unique among all instances' (71 bits).
_INSTANCE_ID_LENGTH = 12
MAX_RETRY_DELAY_SECONDS = 30.0
CLOSING_RETRY_DELAY_SECONDS = 0.2
DEFAULT_CLOSE_TIMEOUT_SECONDS = 10.0
# Both databases cap bound parameters per statement (SQLite 32766, PostgreSQL 32767).
_MAX_PARAMETERS = 32_000
_TABLE: Table = UsageRecord.metadata.tables[UsageRecord.__tablename__]


class UsageEvent(msgspec.Struct, kw_only=True):
    """One finished request, as the gateway reports it."""

    request_id: str
    key_id: str | None
    # The generation id the client was given (the response ``id``); None: one is made up.
    id: str | None = None
    # The key's owner.
    user_id: str | None = None
    model: str
    provider: str
    status_code: int
    stream: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    error_code: str | None = None
    # None: priced from the recorder's price table.
    cost_rub: float | None = None


class UsageRecorder:
    """Buffers usage events and writes them in batches in the background.

    Call ``record`` from the event loop thread. Start with ``start()``; ``close()`` writes what
    is left. Up to ``max_buffered`` events wait while the database is unavailable; beyond that
    new events are dropped and counted in ``dropped``.
    """

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        flush_seconds: float,
        batch_size: int,
        max_buffered: int = 100_000,
        *,
        prices: PriceTable | None = None,
        spend: MonthlySpend | None = None,
        calendar: Calendar | None = None,
    ) -> None:
        self._sessions = session_factory
        self._prices = prices
        self._spend = spend
        self._calendar = calendar or (spend.calendar if spend is not None else Calendar(0))
        self._flush_seconds = flush_seconds
        columns = len(_TABLE.columns)
        self._batch_size = max(1, min(batch_size, _MAX_PARAMETERS // columns))
        self._max_buffered = max_buffered
        self._buffer: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._close_requested = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._closing = False
        self._failures = 0
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.written = 0
        self._instance = new_id("")[:_INSTANCE_ID_LENGTH]
        self._sequence = itertools.count(1)

    @property
    def pending(self) -> int:
        """Events recorded but not yet committed to the database."""
        return len(self._buffer)

    def lag_seconds(self, now: float) -> float:
        """How long the oldest unwritten event has waited, at Unix time ``now`` (0 if none)."""
        if not self._buffer:
            return 0.0
        oldest: float = self._buffer[0]["created_at"].timestamp()
        return max(now - oldest, 0.0)

    def new_id(self, prefix: str = USAGE_ID_PREFIX) -> str:
        """A unique generation id: ``prefix``, this recorder's random part and a counter (unique
        across processes without a system call per request; random ids cost a getrandom())."""
        return f"{prefix}{self._instance}{next(self._sequence):x}"

    def pending_record(self, record_id: str) -> dict[str, Any] | None:
        """A recorded event not yet written, by id (for lookups in the first second)."""
        for row in reversed(self._buffer):
            if row["id"] == record_id:
                return dict(row)
        return None

    def record(self, event: UsageEvent) -> None:
        """Queue ``event`` for writing. O(1); never blocks, never raises."""
        try:
            if len(self._buffer) >= self._max_buffered:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 10_000 == 0:
                    logger.error("usage buffer full: %d events dropped so far", self.dropped)
                return
            row = msgspec.structs.asdict(event)
            row["id"] = event.id or self.new_id()
            row["created_at"] = utc_now()
            if event.cost_rub is None:
                row["cost_rub"] = self._cost(event)
            if self._spend is not None and event.key_id is not None:
                self._spend.add(event.key_id, row["cost_rub"])
            self._buffer.append(row)
            if len(self._buffer) >= self._batch_size:
                self._wake.set()
        except Exception:
            # Losing one usage row must never fail the request that produced it.
            logger.exception("could not queue a usage event")

    def _cost(self, event: UsageEvent) -> float:
        if self._prices is None:
            return 0.0
        return self._prices.cost(event.model, event.prompt_tokens, event.completion_tokens)

    async def start(self) -> None:
        """Start the background writer."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="xrouter-usage-recorder")

    async def flush(self) -> bool:
        """Write every waiting event now; False if a write failed (the rest stay queued)."""
        async with self._flush_lock:  # two flushes at once would pop each other's batches
            while self._buffer:
                count = min(len(self._buffer), self._batch_size)
                if not await self._write_batch(list(islice(self._buffer, count))):
                    return False
                # Only now, after the commit: until here a failure leaves the batch queued.
                for _ in range(count):
                    self._buffer.popleft()
                self.written += count
            return True

    async def close(self, timeout: float = DEFAULT_CLOSE_TIMEOUT_SECONDS) -> None:
        """Write what is left (retrying until ``timeout``), then stop."""
        self._closing = True
        self._wake.set()
        self._close_requested.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="xrouter-usage-recorder")
        if not self._task.done():
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(self._task)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._buffer:
            logger.error("usage recorder closed with %d unwritten events", len(self._buffer))

    async def _write_batch(self, batch: list[dict[str, Any]]) -> bool:
        try:
            try:
                await self._write(batch)
            except (DataError, IntegrityError):
                await self._write_one_by_one(batch)
        except Exception:
            self._failures += 1
            logger.warning(
                "writing %d usage records failed (%d in a row); will retry",
                len(batch),
                self._failures,
                exc_info=self._failures == 1,
            )
            return False
        if self._failures:
            logger.info("usage writes recovered after %d failures", self._failures)
        self._failures = 0
        return True

    async def _run(self) -> None:
        while True:
            await self._wait()
            if await self.flush() and self._closing:
                return

    async def _wait(self) -> None:
        if self._failures:
            if self._closing:
                await asyncio.sleep(CLOSING_RETRY_DELAY_SECONDS)
            else:
                # Backing off: a full batch does not cut this short, closing does.
                backoff = 2 ** min(self._failures, 16)
                delay = min(self._flush_seconds * backoff, MAX_RETRY_DELAY_SECONDS)
                await _wait_for(self._close_requested, delay)
        elif not self._closing:
            await _wait_for(self._wake, self._flush_seconds)
        self._wake.clear()

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        async with self._sessions() as session:
            # executemany with one cached statement: compiling a multi-row VALUES clause costs
            # the event loop tens of milliseconds per thousand rows, executemany a few.
            statement = _insert_ignoring_duplicates(session).returning(_TABLE.c.id)
            inserted = set((await session.execute(statement, rows)).scalars())
            # Only what this INSERT added: a retry after an ambiguous failure counts nothing
            # twice.
            await write_rollups(session, [r for r in rows if r["id"] in inserted], self._calendar)
            await session.commit()

    async def _write_one_by_one(self, rows: list[dict[str, Any]]) -> None:
        # One bad row (say, a NULL where a value is required) must not block the queue forever.
        for row in rows:
            try:
                await self._write([row])
            except (DataError, IntegrityError):
                self.dropped += 1
                logger.exception("dropping a usage record the database refuses: %r", row)


async def _wait_for(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


def _insert_ignoring_duplicates(session: AsyncSession) -> Insert:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(_TABLE).on_conflict_do_nothing(index_elements=["id"])
    if dialect == "sqlite":
        return sqlite.insert(_TABLE).on_conflict_do_nothing(index_elements=["id"])
    raise NotImplementedError(f"usage records are not supported on {dialect}")
