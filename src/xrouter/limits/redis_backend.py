"""The Redis backend: limits shared by every gateway instance, exact under concurrency.

Each check is one round trip: one Lua script reads every limit of the request, decides, and
charges all of them or none, atomically. It takes the time from the Redis server (``TIME``), so
the instances' clocks do not matter. Scripts run by ``EVALSHA``; after a Redis restart or
``SCRIPT FLUSH`` the ``NOSCRIPT`` reply is answered with one ``EVAL``, which also re-caches the
script. Every key shares one hash tag, so the scripts work on Redis Cluster too: all of them
live on the one slot, which one primary serves.

A single server (``redis://``, ``rediss://``) is reached through ``PipelinedRedis``: one
connection that every concurrent check shares, at a fraction of redis-py's cost per call. What a
check sends unchanged for a given set of limits (its keys, limits and periods) is packed once
for that set; each check packs only the time and its costs.
Sentinel and Cluster URLs, and URLs with options that client does not implement, use redis-py.

A cluster client first learns which node serves which slot, and learns it again after a node
fails: that load runs as a task of its own that a call waits for within its budget but never
cancels, so a load that outlasts one call's few milliseconds completes for the next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from xrouter.background import consume_failure
from xrouter.deadlines import SharedTimeout
from xrouter.limits.backend import BackendUnavailableError
from xrouter.limits.gcra import MAX_SLACK_SECONDS, BucketState, Decision
from xrouter.limits.pipelined_redis import PipelinedRedis, array_header, bulk_strings
from xrouter.limits.policy import POLICY_CACHE_SIZE, Limit
from xrouter.redis_url import RedisClient, connect_redis, needs_topology

# The clients the limiter works with: both run scripts with ``evalsha`` / ``eval``.
LimiterClient = RedisClient | PipelinedRedis

# The server's clock, unless the caller passes a time (tests of window edges do).
_NOW = """
local function server_now(given)
  if given ~= '' then return tonumber(given) end
  local clock = redis.call('TIME')
  return tonumber(clock[1]) + tonumber(clock[2]) / 1000000
end
"""

# Mirrors ``gcra.check``. KEYS: one per limit. ARGV: max slack, then per limit: limit / period,
# then the time or '', then per limit: cost. What changes from call to call comes last, so the
# rest is packed once per set of limits. Returns {allowed, then per limit: remaining, reset ms,
# retry ms}.
ACQUIRE_SCRIPT = (
    _NOW
    + """
local n = #KEYS
local max_slack = tonumber(ARGV[1])
local now = server_now(ARGV[2 * n + 2])
local levels, wanted, intervals, periods, slacks = {}, {}, {}, {}, {}
local allowed = 1
for i = 1, n do
  local limit = tonumber(ARGV[2 * i])
  local period = tonumber(ARGV[2 * i + 1])
  local cost = tonumber(ARGV[2 * n + 2 + i])
  local interval = period / limit
  local tat = redis.call('GET', KEYS[i])
  local level = 0
  if tat then level = math.max(tonumber(tat) - now, 0) end
  levels[i], wanted[i] = level, level + cost * interval
  intervals[i], periods[i] = interval, period
  slacks[i] = math.min(interval / 2, max_slack)
  if wanted[i] > period + slacks[i] then allowed = 0 end
end
local out = {allowed}
for i = 1, n do
  local level, retry = levels[i], 0
  if allowed == 1 then
    level = wanted[i]
    if level > 0 then
      redis.call('SET', KEYS[i], string.format('%.17g', now + level),
                 'PX', math.ceil(level * 1000) + 1000)
    end
  elseif wanted[i] > periods[i] + slacks[i] then
    retry = wanted[i] - periods[i]
  end
  local remaining = math.floor((periods[i] + slacks[i] - level) / intervals[i])
  out[#out + 1] = remaining
  out[#out + 1] = math.ceil(level * 1000)
  out[#out + 1] = math.ceil(retry * 1000)
end
return out
"""
)

# Mirrors ``gcra.adjusted_level``. KEYS: one per limit. ARGV: time or '', then per limit:
# limit / period / change.
ADJUST_SCRIPT = (
    _NOW
    + """
local now = server_now(ARGV[1])
for i = 1, #KEYS do
  local limit = tonumber(ARGV[3 * i - 1])
  local period = tonumber(ARGV[3 * i])
  local change = tonumber(ARGV[3 * i + 1])
  local tat = redis.call('GET', KEYS[i])
  local level = 0
  if tat then level = math.max(tonumber(tat) - now, 0) end
  level = level + change * period / limit
  if level > 0 then
    redis.call('SET', KEYS[i], string.format('%.17g', now + level),
               'PX', math.ceil(level * 1000) + 1000)
  else
    redis.call('DEL', KEYS[i])
  end
end
return 1
"""
)

# Bounds the socket operations themselves; each call's real budget is the (much shorter)
# limiter timeout.
CONNECT_TIMEOUT_SECONDS = 1.0
# Errors that mean "Redis cannot answer", as opposed to a bug in the script or the caller.
_UNREACHABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)


class PackedArguments(NamedTuple):
    """A script's ``numkeys``, keys and arguments in RESP, for the pipelined client: ``strings``
    bulk strings in ``body``."""

    strings: int
    body: bytes


# What a script runs on: its keys and arguments, or them packed (for the pipelined client).
ScriptArguments = tuple[Sequence[str], Sequence[Any]] | PackedArguments


class RedisScript:
    """A Lua script run by ``EVALSHA``, falling back to ``EVAL`` on ``NOSCRIPT``."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        self._by_sha = bulk_strings(("EVALSHA", self.sha))
        self._by_source = bulk_strings(("EVAL", self.source))

    async def run(self, client: LimiterClient, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except redis_errors.NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)

    async def run_packed(self, client: PipelinedRedis, arguments: PackedArguments) -> Any:
        """``run`` for the pipelined client, with the arguments packed by the caller."""
        header = array_header(arguments.strings + 2)
        try:
            return await client.send(b"".join((header, self._by_sha, arguments.body)))
        except redis_errors.NoScriptError:
            return await client.send(b"".join((header, self._by_source, arguments.body)))


class _LimitSet:
    """What every acquire script call for one set of limits sends unchanged, computed once."""

    __slots__ = ("keys", "limits", "packed", "settings", "strings")

    def __init__(self, limits: Sequence[Limit]) -> None:
        self.limits = limits
        self.keys = [limit.storage_key for limit in limits]
        self.settings: list[Any] = [MAX_SLACK_SECONDS]
        for limit in limits:
            self.settings += (limit.limit, limit.period)
        head = (len(self.keys), *self.keys, *self.settings)
        self.packed = bulk_strings(head)
        # The time and one cost per limit follow.
        self.strings = len(head) + 1 + len(limits)


# Sets of limits whose packed arguments are kept: the policy keeps at most this many.
_LIMIT_SETS = POLICY_CACHE_SIZE


def limiter_client(url: str) -> LimiterClient:
    """The limiter's own Redis client: no retries of its own (every call has a budget of a few
    milliseconds; the failure policy decides what a failure means) and its own connections, so
    a restart of Redis is handled without disturbing other users of Redis. A single server
    gets the pipelined client; Sentinel and Cluster get redis-py."""
    with contextlib.suppress(ValueError):
        return PipelinedRedis.from_url(
            url, connect_timeout=CONNECT_TIMEOUT_SECONDS, reply_timeout=CONNECT_TIMEOUT_SECONDS
        )
    return connect_redis(
        url,
        retry=Retry(NoBackoff(), 0),
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=CONNECT_TIMEOUT_SECONDS,
    )


async def _drop_idle_connections(client: LimiterClient) -> None:
    # The pipelined client has one connection, which it replaces itself once it is lost.
    if isinstance(client, aioredis.Redis):
        await client.connection_pool.disconnect(inuse_connections=False)


class RedisBackend:
    """Limits in Redis. Every call is bounded by ``timeout`` seconds; a slow or unreachable
    Redis raises ``BackendUnavailableError`` (the failure policy decides what happens next).
    The backend owns ``client`` and closes it."""

    name = "redis"

    def __init__(
        self,
        client: LimiterClient,
        timeout: float,
        *,
        observe_latency: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``clock`` replaces the Redis server's time (tests only: it must be shared by every
        caller, which is exactly what the server's time gives for free)."""
        self._client = client
        self._pipelined = client if isinstance(client, PipelinedRedis) else None
        self._clock = clock
        self._budget = SharedTimeout(timeout)
        self._observe = observe_latency
        self._acquire = RedisScript(ACQUIRE_SCRIPT)
        self._adjust = RedisScript(ADJUST_SCRIPT)
        # By the identity of the policy's (cached) tuple of limits; an entry holds its tuple,
        # so the identity cannot be reused while the entry lives.
        self._limit_sets: dict[int, _LimitSet] = {}
        self._topology: asyncio.Task[Any] | None = None
        self._cluster = client if isinstance(client, RedisCluster) else None
        if self._cluster is not None and needs_topology(self._cluster):
            # Built inside the running worker: the first requests find the topology loaded.
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop()
                self._load_topology()

    async def acquire(self, limits: Sequence[Limit], costs: Sequence[int]) -> Decision:
        limit_set = self._limit_set(limits)
        now = self._now()
        arguments: ScriptArguments
        if self._pipelined is not None:
            arguments = PackedArguments(
                limit_set.strings, limit_set.packed + bulk_strings((now, *costs))
            )
        else:
            arguments = (limit_set.keys, [*limit_set.settings, now, *costs])
        reply = await self._call(self._acquire, arguments)
        states = tuple(
            [
                BucketState(
                    min(max(reply[i], 0), limit.limit), reply[i + 1] / 1000, reply[i + 2] / 1000
                )
                for limit, i in zip(limits, range(1, len(reply), 3), strict=True)
            ]
        )
        return Decision(reply[0] == 1, states, self.name)

    async def adjust(self, limits: Sequence[Limit], changes: Sequence[int]) -> None:
        args: list[Any] = [self._now()]
        keys: list[str] = []
        for limit, change in zip(limits, changes, strict=True):
            if change:
                keys.append(limit.storage_key)
                args += (limit.limit, limit.period, change)
        if not keys:
            return
        arguments: ScriptArguments = (keys, args)
        if self._pipelined is not None:
            arguments = PackedArguments(
                1 + len(keys) + len(args), bulk_strings((len(keys), *keys, *args))
            )
        await self._call(self._adjust, arguments)

    async def close(self) -> None:
        if self._topology is not None:
            self._topology.cancel()
            with contextlib.suppress(BaseException):
                await self._topology
        await self._client.aclose()

    def _limit_set(self, limits: Sequence[Limit]) -> _LimitSet:
        limit_set = self._limit_sets.get(id(limits))
        if limit_set is None or limit_set.limits is not limits:
            if len(self._limit_sets) >= _LIMIT_SETS:
                self._limit_sets.clear()
            limit_set = self._limit_sets[id(limits)] = _LimitSet(limits)
        return limit_set

    def _load_topology(self) -> asyncio.Task[Any]:
        """The one task (re)loading a cluster client's topology, started if none runs."""
        assert self._cluster is not None
        if self._topology is None or self._topology.done():
            self._topology = asyncio.create_task(
                asyncio.wait_for(self._cluster.initialize(), CONNECT_TIMEOUT_SECONDS),
                name="xrouter-limiter-topology",
            )
            # Its failure is the waiting calls' to report; nobody may be waiting.
            self._topology.add_done_callback(consume_failure)
        return self._topology

    def _run(self, script: RedisScript, arguments: ScriptArguments) -> Awaitable[Any]:
        if self._pipelined is not None:
            assert isinstance(arguments, PackedArguments)
            return script.run_packed(self._pipelined, arguments)
        assert not isinstance(arguments, PackedArguments)
        return self._run_on_redis_py(script, *arguments)

    async def _run_on_redis_py(
        self, script: RedisScript, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        if self._cluster is not None and needs_topology(self._cluster):
            await asyncio.shield(self._load_topology())
        return await script.run(self._client, keys, args)

    def _now(self) -> str:
        return "" if self._clock is None else repr(self._clock())

    async def _call(self, script: RedisScript, arguments: ScriptArguments) -> Any:
        started = time.perf_counter()
        try:
            with self._budget.deadline():
                try:
                    reply = await self._run(script, arguments)
                except redis_errors.ConnectionError:
                    # Connections pooled before a Redis restart each fail once: drop the idle
                    # ones and try once more on a fresh connection, within the same budget (a
                    # cluster client drops them itself and relearns the topology first).
                    await _drop_idle_connections(self._client)
                    reply = await self._run(script, arguments)
        except TimeoutError as error:
            raise BackendUnavailableError(
                "timeout", f"no reply in {self._budget.seconds * 1000:g} ms"
            ) from error
        except _UNREACHABLE as error:
            raise BackendUnavailableError("connection", type(error).__name__) from error
        except redis_errors.RedisError as error:
            # A loading replica, a full memory, a read-only failover target: not our bug, and
            # the gateway must keep serving.
            raise BackendUnavailableError("error", type(error).__name__) from error
        finally:
            if self._observe is not None:
                self._observe(time.perf_counter() - started)
        return reply
