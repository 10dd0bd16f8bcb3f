"""Usage records, written in batches off the request path.

``record`` only appends to an in-memory queue (pricing the request and counting its cost
towards the key's monthly spend on the way). A background task writes the queue in batches,
each in one transaction, together with the per-key rollups of exactly the rows its INSERTs
added. A batch is everything waiting, up to ``MAX_BATCH_ROWS``: a write costs mostly per
statement, so a writer that has fallen behind catches up with bigger batches. A batch leaves
the queue only once its transaction has committed, so a failed write is retried rather than
lost; every event gets its id when it is recorded and the INSERT skips ids already present, so
a retry after an ambiguous failure (committed, but the acknowledgement was lost) never writes
a row twice, nor counts it twice in the rollups.

With a journal (usage/journal.py), ``record`` also appends the event to this process's journal
segment before it returns, so an event survives the process being killed; the background task
rotates the segments, deletes them once their events are committed, and adopts the segments of
processes that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import msgspec
from sqlalchemy import Connection
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from xrouter.background import stop_tasks
from xrouter.storage.models import new_id
from xrouter.usage.journal import AdoptedSegment, Segment, UsageJournal
from xrouter.usage.periods import Calendar
from xrouter.usage.pricing import PriceTable
from xrouter.usage.rollups import last_used, rollup_rows
from xrouter.usage.spend import MonthlySpend
from xrouter.usage.statements import RECORD_COLUMNS, usage_statements

logger = logging.getLogger(__name__)

USAGE_ID_PREFIX = "usage_"
# Random characters that make one recorder's ids unique among all instances' (71 bits).
_INSTANCE_ID_LENGTH = 12
MAX_RETRY_DELAY_SECONDS = 30.0
CLOSING_RETRY_DELAY_SECONDS = 0.2
# Rows one transaction takes at most (or the batch size, if larger). A statement costs far
# more than a row: on SQLite each is a few hand-offs to the driver's thread, every one waiting
# for the event loop's thread to let go of the GIL, ~40 ms a statement on a saturated core. At
# the batch size alone (500 rows, ~6 statements) the writer kept up with no more than ~2,000
# requests/s there, and the queue grew for as long as a heavier load lasted.
MAX_BATCH_ROWS = 5_000
DEFAULT_CLOSE_TIMEOUT_SECONDS = 10.0
DEFAULT_ADOPT_SECONDS = 2.0
_JOURNAL_ENCODER = msgspec.msgpack.Encoder()


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


_EVENT_DEFAULTS = {
    field.name: field.default
    for field in msgspec.structs.fields(UsageEvent)
    if field.default is not msgspec.NODEFAULT
}


class UsageRecorder:
    """Buffers usage events and writes them in batches in the background.

    Call ``record`` from the event loop thread. Start with ``start()``; ``close()`` writes what
    is left. Up to ``max_buffered`` events wait while the database is unavailable; beyond that
    new events are dropped and counted in ``dropped``. With a ``journal``, every ``adopt_seconds``
    the segments of dead processes are looked for and their events queued.
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
        journal: UsageJournal | None = None,
        adopt_seconds: float = DEFAULT_ADOPT_SECONDS,
    ) -> None:
        self._sessions = session_factory
        self._prices = prices
        self._spend = spend
        self._calendar = calendar or (spend.calendar if spend is not None else Calendar(0))
        self._flush_seconds = flush_seconds
        self._batch_size = max(1, batch_size)
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
        self._journal = journal
        self._adopt_seconds = adopt_seconds
        self._next_adoption = 0.0
        # Which journal segment the buffered events are in, in buffer order, as runs of
        # [segment (None: not journaled), count]: a commit releases them from the front.
        self._origins: deque[list[Any]] = deque()

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
            row["created_at"] = datetime.now(UTC)
            cost = event.cost_rub
            if cost is None:
                prices = self._prices
                cost = row["cost_rub"] = (
                    0.0
                    if prices is None
                    else prices.cost(event.model, event.prompt_tokens, event.completion_tokens)
                )
            if self._spend is not None and event.key_id is not None:
                self._spend.add(event.key_id, cost)
            if self._journal is not None:
                self._track(self._journal.append(_JOURNAL_ENCODER.encode(row)), 1)
            self._buffer.append(row)
            if len(self._buffer) >= self._batch_size:
                self._wake.set()
        except Exception:
            # Losing one usage row must never fail the request that produced it.
            logger.exception("could not queue a usage event")

    async def start(self) -> None:
        """Start the background writer (and this process's journal segment)."""
        if self._journal is not None and self._journal.active is None:
            try:
                self._journal.open()
            except OSError:
                logger.exception(
                    "usage journal %s unavailable: usage lives in memory until written",
                    self._journal.directory,
                )
                self._journal = None
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="xrouter-usage-recorder")

    async def flush(self) -> bool:
        """Write every waiting event now; False if a write failed (the rest stay queued)."""
        async with self._flush_lock:  # two flushes at once would pop each other's batches
            while self._buffer:
                count = min(len(self._buffer), max(self._batch_size, MAX_BATCH_ROWS))
                if not await self._write_batch(list(islice(self._buffer, count))):
                    return False
                # Only now, after the commit: until here a failure leaves the batch queued.
                for _ in range(count):
                    self._buffer.popleft()
                self._release(count)
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
                await stop_tasks(self._task)
        if self._buffer:
            journaled = sum(count for segment, count in self._origins if segment is not None)
            # Journaled events are written by the next process to start (or adopt them).
            logger.log(
                logging.WARNING if journaled == len(self._buffer) else logging.ERROR,
                "usage recorder closed with %d unwritten events (%d of them kept in the journal)",
                len(self._buffer),
                journaled,
            )
        if self._journal is not None:
            await self._journal.close()

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
            await self._look_after_journal()
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
            await self._idle(self._flush_seconds)
        self._wake.clear()

    async def _idle(self, seconds: float) -> None:
        """Wait ``seconds`` or until a batch is full, looking after the journal meanwhile."""
        if self._journal is None:
            await _wait_for(self._wake, seconds)
            return
        deadline = time.monotonic() + seconds
        while not self._wake.is_set() and (left := deadline - time.monotonic()) > 0:
            await _wait_for(self._wake, min(left, self._adopt_seconds))
            await self._look_after_journal()

    async def _look_after_journal(self) -> None:
        journal = self._journal
        if journal is None or self._closing:
            return
        try:
            await journal.rotate_if_due()
            if time.monotonic() >= self._next_adoption:
                self._next_adoption = time.monotonic() + self._adopt_seconds
                budget = self._max_buffered - len(self._buffer)
                if budget > 0:
                    for adopted in await journal.adopt_orphans(budget):
                        self._queue_adopted(adopted)
        except Exception:
            logger.exception("usage journal upkeep failed; will try again")

    def _queue_adopted(self, adopted: AdoptedSegment) -> None:
        assert self._journal is not None
        queued = 0
        for payload in adopted.payloads:
            row = _journaled_row(payload)
            if row is None:
                self.dropped += 1
                self._journal.committed(adopted.segment, 1)
                continue
            self._buffer.append(row)
            queued += 1
        self._track(adopted.segment, queued)
        if queued:
            self._wake.set()

    def _track(self, segment: Segment | None, count: int) -> None:
        if count == 0:
            return
        if self._origins and self._origins[-1][0] is segment:
            self._origins[-1][1] += count
        else:
            self._origins.append([segment, count])

    def _release(self, count: int) -> None:
        """The first ``count`` buffered events are committed: so are their journal entries."""
        while count > 0 and self._origins:
            run = self._origins[0]
            taken = min(count, run[1])
            run[1] -= taken
            count -= taken
            if run[1] == 0:
                self._origins.popleft()
            if run[0] is not None and self._journal is not None:
                self._journal.committed(run[0], taken)

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        async with self._sessions() as session:
            connection = await session.connection()
            await connection.run_sync(self._write_in_transaction, rows)
            await session.commit()

    def _write_in_transaction(self, connection: Connection, rows: list[dict[str, Any]]) -> None:
        statements = usage_statements(connection.dialect.name)
        added: list[dict[str, Any]] = []
        for page in _pages(rows, statements.page_rows):
            added += statements.insert_records(connection, page)
        # Only what this INSERT added: a retry after an ambiguous failure counts nothing twice.
        statements.upsert_rollups(connection, rollup_rows(added, self._calendar))
        statements.update_last_used(connection, last_used(added))

    async def _write_one_by_one(self, rows: list[dict[str, Any]]) -> None:
        # One bad row (say, a NULL where a value is required) must not block the queue forever.
        for row in rows:
            try:
                await self._write([row])
            except (DataError, IntegrityError):
                self.dropped += 1
                logger.exception("dropping a usage record the database refuses: %r", row)


def _pages(rows: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """``rows`` in slices of at most ``size``."""
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _journaled_row(payload: bytes) -> dict[str, Any] | None:
    """The row a journal payload holds; None (logged) if it is not a usage row. A column the
    writing version did not know takes the event's default (the database refuses the row if
    there is none); a field this version does not know is left out."""
    try:
        row = msgspec.msgpack.decode(payload)
    except msgspec.DecodeError:
        row = None
    if not isinstance(row, dict) or not isinstance(row.get("id"), str) or "created_at" not in row:
        logger.error("dropping an unreadable usage journal entry of %d bytes", len(payload))
        return None
    return {name: row.get(name, _EVENT_DEFAULTS.get(name)) for name in RECORD_COLUMNS}


async def _wait_for(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
