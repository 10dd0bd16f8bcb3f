"""Counters, gauges and histograms cheap enough for every request: prometheus_client's own
classes, so ``/metrics`` renders them exactly as before, with a faster update path.

prometheus_client guards every value with a lock and validates and converts the label values of
each ``labels()`` call. The request metrics are updated from the event loop's thread only, so
in a single process their values are plain floats (no lock), and a labelled child is found by
the label values as given, in a dict. With several worker processes (multiprocess mode) the
values are prometheus_client's shared-file ones, each update a locked write to a memory-mapped
file (1.7 µs a counter, 3 µs a histogram here, tens of µs a request): a worker adds its updates
up in plain floats and writes the sums to the files with ``flush_shared()``, once a second
(``multiprocess.sample_forever``), before it renders ``/metrics`` and when it stops.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Self

import prometheus_client
from prometheus_client import values
from prometheus_client.metrics import MetricWrapperBase


class PlainValue:
    """A float without a lock: for values updated from one thread."""

    __slots__ = ("_exemplar", "_value")
    _multiprocess = False

    def __init__(self) -> None:
        self._value = 0.0
        self._exemplar: Any = None

    def inc(self, amount: float) -> None:
        self._value += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        self._value = value

    def get(self) -> float:
        return self._value

    def set_exemplar(self, exemplar: Any) -> None:
        self._exemplar = exemplar

    def get_exemplar(self) -> Any:
        return self._exemplar


class DeferredValue:
    """A shared-file value whose increments wait in a float until ``flush_shared()``. A set
    (a gauge's) is written at once, replacing what waits."""

    __slots__ = ("_pending", "_shared")
    _multiprocess = True

    def __init__(self, shared: Any) -> None:
        self._shared = shared
        self._pending = 0.0

    def inc(self, amount: float) -> None:
        if not self._pending:
            _UNFLUSHED.append(self)
        self._pending += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        self._pending = 0.0
        self._shared.set(value, timestamp)

    def get(self) -> float:
        return float(self._shared.get()) + self._pending

    def set_exemplar(self, exemplar: Any) -> None:
        self._shared.set_exemplar(exemplar)

    def get_exemplar(self) -> Any:
        return self._shared.get_exemplar()

    def flush(self) -> None:
        pending, self._pending = self._pending, 0.0
        if pending:
            self._shared.inc(pending)


# Values with increments not yet in their files (a value is listed again after each flush).
_UNFLUSHED: list[DeferredValue] = []


def flush_shared() -> None:
    """Write every waiting increment to the shared files (multiprocess mode; else nothing)."""
    for value in _UNFLUSHED:
        value.flush()
    _UNFLUSHED.clear()


def _single_process() -> bool:
    return not values.ValueClass._multiprocess


def _own_value(shared: Any) -> PlainValue | DeferredValue:
    """The value a metric updates: a plain float alone, or one in front of a shared file."""
    return PlainValue() if _single_process() else DeferredValue(shared)


class _MissingLabels:
    """In place of the value of a labelled metric's parent, which ``labels()`` must pick."""

    def inc(self, amount: float) -> None:
        raise ValueError("the metric is missing label values: call labels() first")


_MISSING_LABELS: Any = _MissingLabels()


class _CachedChildren(MetricWrapperBase):
    """``labels()`` answered from a dict keyed by the label values as the caller passes them.

    It holds no more entries than the metric has children times the few spellings of a value
    callers use (``200`` and ``"200"``): bounded as the labels are."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._children: dict[tuple[object, ...], Self] = {}
        super().__init__(*args, **kwargs)

    def labels(self, *labelvalues: object, **labelkwargs: object) -> Self:
        if labelkwargs:
            return super().labels(*labelvalues, **labelkwargs)
        child = self._children.get(labelvalues)
        if child is None:
            child = self._children[labelvalues] = super().labels(*labelvalues)
        return child

    def remove(self, *labelvalues: Any) -> None:
        super().remove(*labelvalues)
        self._children = {}

    def remove_by_labels(self, labels: dict[str, str]) -> None:
        super().remove_by_labels(labels)
        self._children = {}

    def clear(self) -> None:
        super().clear()
        self._children = {}


class _PlainValued(MetricWrapperBase):
    """A counter's or gauge's value as a ``PlainValue`` in a single process."""

    _value = _MISSING_LABELS

    def _metric_init(self) -> None:
        super()._metric_init()  # type: ignore[no-untyped-call]  # typed in the subclasses
        self._value = _own_value(self._value)


class Counter(_CachedChildren, _PlainValued, prometheus_client.Counter):
    """``prometheus_client.Counter`` with a lock-free value and a cached ``labels()``."""

    def inc(self, amount: float = 1, exemplar: dict[str, str] | None = None) -> None:
        if amount < 0 or exemplar is not None:
            super().inc(amount, exemplar)  # its error, or the exemplar kept
            return
        self._value.inc(amount)


class Gauge(_CachedChildren, _PlainValued, prometheus_client.Gauge):
    """``prometheus_client.Gauge`` with a lock-free value and a cached ``labels()``."""

    def inc(self, amount: float = 1) -> None:
        if self._is_most_recent:
            super().inc(amount)  # its error
            return
        self._value.inc(amount)

    def dec(self, amount: float = 1) -> None:
        if self._is_most_recent:
            super().dec(amount)
            return
        self._value.inc(-amount)


class Histogram(_CachedChildren, prometheus_client.Histogram):
    """``prometheus_client.Histogram`` with lock-free values, the bucket found by bisection,
    and a cached ``labels()``."""

    _sum = _MISSING_LABELS

    def _metric_init(self) -> None:
        super()._metric_init()
        self._sum = _own_value(self._sum)
        self._buckets = [_own_value(bucket) for bucket in self._buckets]

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        if exemplar is not None:
            super().observe(amount, exemplar)
            return
        self._sum.inc(amount)
        bounds = self._upper_bounds
        index = bisect_left(bounds, amount)
        # The last bound is +Inf, so only NaN, which no bucket counts, is above them all.
        if index < len(bounds) and amount <= bounds[index]:
            self._buckets[index].inc(1)
