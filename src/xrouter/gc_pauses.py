"""Keeps the cyclic garbage collector's work off the requests in flight.

Once started, a worker holds a few hundred thousand long-lived objects (modules, settings,
caches, the routing table). Every full collection of the cyclic garbage collector walks all of
them, which takes tens of milliseconds, and every request in flight waits that long: that was
most of a loaded gateway's p99. Frozen after startup, they are left out of later collections,
which then walk only what the requests themselves allocate.

The youngest generation is collected whenever container objects allocated exceed those freed
by its threshold. CPython's 700 is below what the requests in flight of a busy worker hold at
once (a few thousand objects at 64 concurrent requests), so their objects' comings and goings
alone crossed it: 1,400 collections in ten seconds at 2,000 requests/s, each walking every
young object in flight (0.3 ms), about 8% of the worker's CPU (with 200 more of the next
generation), and they found 17 objects of garbage between them. Above that working set the
collector runs when something really grows: cycles, which are still collected, and caches.

A startup object that later becomes part of unreachable cycle is never collected; the startup
state is built once and replaced rarely (a routes reload), so that is bounded.
"""

from __future__ import annotations

import gc

# Container objects allocated beyond those freed before the youngest generation is collected.
YOUNG_GENERATION_THRESHOLD = 10_000


def prepare_collector() -> None:
    """Collect what startup left behind, move every surviving object out of the collector's
    reach (``gc.freeze``) and raise the youngest generation's threshold above what requests
    in flight hold. Call once, when the worker is ready to serve."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, older, oldest)
