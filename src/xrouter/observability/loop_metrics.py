"""Counters, gauges and histograms cheap enough for every request: prometheus_client's own
classes, so ``/metrics`` renders them exactly as before, with a faster update path.

prometheus_client guards every value with a lock and validates and converts the label values of
each ``labels()`` call. The request metrics are updated from the event loop's thread only, so
in a single process their values are plain floats (no lock), and a labelled child is found by
the label values as given, in a dict. With several worker processes (multiprocess mode) the
values stay prometheus_client's shared-file ones: only the cached lookup changes there.
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


def _single_process() -> bool:
    return not values.ValueClass._multiprocess


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
        if _single_process():
            self._value = PlainValue()


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
        if _single_process():
            self._sum = PlainValue()
            self._buckets = [PlainValue() for _ in self._upper_bounds]

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
