"""What each key has spent this month, held in memory so the budget check does no I/O.

Seeded at start from the daily usage rollups of the current month and increased as usage is
recorded. Other instances' spending arrives through a shared Redis counter per key and month
(``INCRBYFLOAT``, pushed and read back every ``sync_seconds``) or, without Redis, by re-reading
the rollups every ``DATABASE_SYNC_SECONDS``. A counter only ever grows within a month, so every
instance takes the larger of its own view and the shared one. The month turns over at local
midnight (see ``Calendar``) and every key starts again from zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from xrouter.background import stop_tasks
from xrouter.redis_url import RedisClient
from xrouter.storage.models import UsageRollup
from xrouter.usage.periods import Calendar

logger = logging.getLogger(__name__)

DATABASE_SYNC_SECONDS = 5.0
QUERY_TIMEOUT_SECONDS = 10.0
REDIS_TIMEOUT_SECONDS = 2.0
# Counters outlive their month by a little, for instances whose clocks differ.
REDIS_COUNTER_SECONDS = 40 * 86_400


class MonthlySpend:
    """Roubles spent per key in the current month."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        calendar: Calendar,
        *,
        redis_client: RedisClient | None = None,
        sync_seconds: float = 1.0,
        watched_keys: Callable[[], Iterable[str]] = tuple,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = session_factory
        self.calendar = calendar
        self._redis = redis_client
        self._sync_seconds = sync_seconds if redis_client is not None else DATABASE_SYNC_SECONDS
        self._watched = watched_keys
        self._clock = clock
        self._spent: defaultdict[str, float] = defaultdict(float)
        self._unpushed: defaultdict[str, float] = defaultdict(float)
        self._month_start = self._month_end = 0.0
        self._month = ""
        self._task: asyncio.Task[None] | None = None
        self._failures = 0

    def spent(self, key_id: str) -> float:
        """Roubles ``key_id`` spent this month as far as this instance knows. No I/O."""
        self._turn_month()
        return self._spent.get(key_id, 0.0)

    def add(self, key_id: str, cost: float) -> None:
        """Count ``cost`` roubles just recorded for ``key_id``."""
        if cost <= 0:
            return
        self._turn_month()
        self._spent[key_id] += cost
        if self._redis is not None:
            self._unpushed[key_id] += cost

    def resets_at(self) -> datetime:
        """When the current month ends and every budget starts again."""
        self._turn_month()
        return datetime.fromtimestamp(self._month_end, UTC)

    async def start(self) -> None:
        """Load this month's spending (errors propagate), then keep it in step in the background."""
        self._turn_month()
        await self._read_database()
        self._task = asyncio.create_task(self._run(), name="xrouter-monthly-spend")

    async def close(self) -> None:
        """Stop syncing, pushing what this instance spent since the last sync."""
        await stop_tasks(self._task)
        self._task = None
        if self._redis is not None and self._unpushed:
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await self._sync_redis()

    def _turn_month(self) -> None:
        now = self._clock()
        if self._month_start <= now < self._month_end:
            return
        moment = datetime.fromtimestamp(now, UTC)
        start = self.calendar.month_start(moment)
        self._month_start = start.timestamp()
        self._month_end = self.calendar.next_month_start(moment).timestamp()
        self._month = self.calendar.local(start).strftime("%Y-%m")
        self._spent.clear()
        self._unpushed.clear()

    async def _read_database(self) -> None:
        month = self._month
        since = datetime.fromtimestamp(self._month_start, UTC)
        query = (
            select(UsageRollup.key_id, func.sum(UsageRollup.cost_rub))
            .where(UsageRollup.granularity == "day", UsageRollup.bucket_start >= since)
            .group_by(UsageRollup.key_id)
        )
        async with asyncio.timeout(QUERY_TIMEOUT_SECONDS), self._sessions() as session:
            rows = (await session.execute(query)).all()
        if month != self._month:
            return  # the month turned while the query ran: its totals belong to the old one
        for key_id, total in rows:
            if total and total > self._spent.get(key_id, 0.0):
                self._spent[key_id] = float(total)

    async def _sync_redis(self) -> None:
        assert self._redis is not None
        month = self._month
        pushed, self._unpushed = self._unpushed, defaultdict(float)
        watched = sorted(set(self._watched()) | pushed.keys())
        names = [f"xrouter:spend:{month}:{key_id}" for key_id in watched]
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                pipe = self._redis.pipeline(transaction=False)
                for key_id, name in zip(watched, names, strict=True):
                    # A counter Redis does not have yet starts from what this instance knows
                    # (the database's total at start plus its own spending since).
                    seed = self._spent.get(key_id, 0.0) - pushed.get(key_id, 0.0)
                    pipe.set(name, repr(max(seed, 0.0)), nx=True, ex=REDIS_COUNTER_SECONDS)
                    if pushed.get(key_id):
                        pipe.incrbyfloat(name, pushed[key_id])
                # One GET per counter rather than an MGET: on a Redis Cluster the counters
                # spread over the slots, and the pipeline sends each to its own node.
                for name in names:
                    pipe.get(name)
                results = await pipe.execute() if names else []
        except BaseException:
            for key_id, cost in pushed.items():  # try again on the next sync
                self._unpushed[key_id] += cost
            raise
        if not results or month != self._month:
            return
        for key_id, value in zip(watched, results[-len(names) :], strict=True):
            if value is not None and float(value) > self._spent.get(key_id, 0.0):
                self._spent[key_id] = float(value)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._sync_seconds)
            try:
                self._turn_month()
                if self._redis is not None:
                    await self._sync_redis()
                else:
                    await self._read_database()
            except Exception:
                self._failures += 1
                logger.warning(
                    "monthly spend sync failed (%d in a row)",
                    self._failures,
                    exc_info=self._failures == 1,
                )
            else:
                self._failures = 0
