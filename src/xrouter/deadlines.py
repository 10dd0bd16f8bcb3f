"""``asyncio.timeout`` for many tasks at once, with one timer between them.

Every proxied request bounds a few waits (its Redis calls, its body, the upstream's first
byte). ``asyncio.timeout`` arms and cancels a loop timer per use, a noticeable part of a
request's CPU. Here the deadlines wait in a heap and one timer, set for the earliest, cancels the
tasks whose deadline has passed and is set again for the next one. Deadlines whose block has
left stay in the heap until they reach its top or the heap is compacted. A task whose deadline
passed sees ``TimeoutError`` leave the block, as with ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from types import TracebackType

# Below this size the heap is never compacted: finished deadlines leave it from the top.
_COMPACT_FROM = 1024
# Running loops with a shared timer of their own (tests start many, one after another).
_MAX_LOOPS = 64


class Deadline:
    """One task's deadline; a context manager around the wait it bounds."""

    __slots__ = ("_cancelling", "expired", "task")

    def __init__(self, task: asyncio.Task[object], cancelling: int) -> None:
        # None once the block has left: the timer then skips it.
        self.task: asyncio.Task[object] | None = task
        self.expired = False
        self._cancelling = cancelling

    def __enter__(self) -> Deadline:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        task, self.task = self.task, None
        # As asyncio.timeout: the cancellation is ours only if nobody else asked for one too.
        if (
            self.expired
            and task is not None
            and task.uncancel() <= self._cancelling
            and kind is asyncio.CancelledError
        ):
            raise TimeoutError from error


class SharedTimeout:
    """Deadlines sharing one timer per event loop; ``seconds`` is ``deadline()``'s default."""

    __slots__ = (
        "_bound_loop",
        "_compacted",
        "_heap",
        "_loop",
        "_order",
        "_timer",
        "_timer_when",
        "seconds",
    )

    def __init__(self, seconds: float = 0.0, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.seconds = seconds
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._compacted = _COMPACT_FROM
        self._loop: asyncio.AbstractEventLoop | None = None
        # Used only from ``loop`` (``loop_timer``'s timers): the running loop is not looked up,
        # which on Python 3.11 costs a getpid() system call each time.
        self._bound_loop = loop
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0

    def now(self) -> float:
        """The loop's time, which deadlines are given in."""
        return (self._bound_loop or asyncio.get_running_loop()).time()

    def deadline(self, seconds: float | None = None) -> Deadline:
        """A deadline for the current task, ``seconds`` (default: the timer's) from now: use
        it as ``with``."""
        after = self.seconds if seconds is None else seconds
        loop = self._bound_loop or asyncio.get_running_loop()
        return self._deadline(loop, loop.time() + after)

    def deadline_at(self, when: float) -> Deadline:
        """A deadline for the current task at loop time ``when``: use it as ``with``."""
        return self._deadline(self._bound_loop or asyncio.get_running_loop(), when)

    def _deadline(self, loop: asyncio.AbstractEventLoop, when: float) -> Deadline:
        if loop is not self._loop:
            # Used from another loop (tests start several): the old loop's timer is gone.
            self._loop = loop
            self._heap = []
            self._timer = None
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a deadline must be set inside a task")
        entry = Deadline(task, task.cancelling())
        heap = self._heap
        while heap and heap[0][2].task is None:
            heapq.heappop(heap)
        if len(heap) >= self._compacted:
            self._compact()
            heap = self._heap
        heapq.heappush(heap, (when, next(self._order), entry))
        if self._timer is None or when < self._timer_when:
            if self._timer is not None:
                self._timer.cancel()
            self._arm(loop, when)
        return entry

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self._timer = loop.call_at(when, self._expire)
        self._timer_when = when

    def _compact(self) -> None:
        live = [item for item in self._heap if item[2].task is not None]
        heapq.heapify(live)
        self._heap = live
        # Compacted again once it has doubled: amortised O(1) per deadline.
        self._compacted = max(_COMPACT_FROM, 2 * len(live))

    def _expire(self) -> None:
        self._timer = None
        loop = self._loop
        assert loop is not None
        now = loop.time()
        heap = self._heap
        while heap:
            when, _, entry = heap[0]
            task = entry.task
            if task is None:
                heapq.heappop(heap)
            elif when > now:
                self._arm(loop, when)
                return
            else:
                heapq.heappop(heap)
                entry.expired = True
                task.cancel()


_LOOP_TIMERS: dict[asyncio.AbstractEventLoop, SharedTimeout] = {}


def loop_timer() -> SharedTimeout:
    """The running loop's shared timer, for deadlines of any length (set from that loop)."""
    loop = asyncio.get_running_loop()
    shared = _LOOP_TIMERS.get(loop)
    if shared is None:
        if len(_LOOP_TIMERS) >= _MAX_LOOPS:
            _LOOP_TIMERS.clear()  # loops that ended; the deadlines they hold still expire
        shared = _LOOP_TIMERS[loop] = SharedTimeout(loop=loop)
    return shared
