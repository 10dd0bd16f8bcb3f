"""``/metrics`` with several worker processes: Prometheus client's multiprocess mode.

``xrouter serve --workers N`` (N > 1) points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory
before the workers start; each worker's counters, histograms and gauges then live in files
there, and whichever worker answers a scrape sums them all. Collectors computed at scrape time
(the remaining-quota gauges, queue and pool figures) come from the answering worker only, so
queue and pool figures are sampled into shared gauges once a second instead. A worker's own
updates reach the files at most a second late (``loop_metrics.flush_shared``), and at once
before it answers a scrape or stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from prometheus_client import CollectorRegistry, Gauge, multiprocess
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from xrouter.observability.loop_metrics import flush_shared
from xrouter.observability.metrics import HELP

ENVIRONMENT = "PROMETHEUS_MULTIPROC_DIR"
SAMPLE_SECONDS = 1.0
# How a figure of several workers adds up: queue and pool counts sum, the lag is the worst.
_MAX_FIGURES = frozenset({"xrouter_usage_flush_lag_seconds"})


def enabled() -> bool:
    """True in a worker of a multi-process server (the directory is set)."""
    return bool(os.environ.get(ENVIRONMENT))


@contextlib.contextmanager
def shared_directory() -> Iterator[Path]:
    """The metrics directory for a multi-process run: the operator's (emptied of the previous
    run's files), or a temporary one removed afterwards."""
    configured = os.environ.get(ENVIRONMENT)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="xrouter-metrics-"))
    os.environ[ENVIRONMENT] = str(path)
    try:
        yield path
    finally:
        os.environ.pop(ENVIRONMENT, None)
        shutil.rmtree(path, ignore_errors=True)


class MergedCollector(Collector):
    """Every worker's metrics, plus this worker's scrape-time collectors the files lack."""

    def __init__(self, local: CollectorRegistry) -> None:
        self._local = local
        self._shared = CollectorRegistry()
        multiprocess.MultiProcessCollector(self._shared)  # type: ignore[no-untyped-call]

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        names = set()
        for metric in self._shared.collect():
            names.add(metric.name)
            yield metric
        for metric in self._local.collect():
            if metric.name not in names:
                yield metric


def exposition_registry(local: CollectorRegistry) -> CollectorRegistry:
    """The registry ``/metrics`` renders: ``local`` alone, or merged with the other workers'."""
    if not enabled():
        return local
    flush_shared()
    merged = CollectorRegistry()
    merged.register(MergedCollector(local))
    return merged


async def sample_forever(
    registry: CollectorRegistry, readers: list[Callable[[], dict[str, float]]]
) -> None:
    """Copy the readers' figures into shared gauges every second, and this worker's waiting
    metric updates into their files (multi-process mode)."""
    gauges: dict[str, Gauge] = {}
    while True:
        flush_shared()
        for reader in readers:
            with contextlib.suppress(Exception):  # a closed pool: try again next time
                for name, value in reader().items():
                    gauge = gauges.get(name)
                    if gauge is None:
                        mode: Literal["livemax", "livesum"] = (
                            "livemax" if name in _MAX_FIGURES else "livesum"
                        )
                        gauge = gauges[name] = Gauge(
                            name, HELP[name], registry=registry, multiprocess_mode=mode
                        )
                    gauge.set(value)
        await asyncio.sleep(SAMPLE_SECONDS)


def worker_exited() -> None:
    """Write this worker's waiting metric updates, then drop its live gauges (active streams,
    queues) from the shared sums."""
    if enabled():
        flush_shared()
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
