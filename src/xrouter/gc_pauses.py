"""Keeps full garbage collections from pausing the requests in flight.

Once started, a worker holds a few hundred thousand long-lived objects (modules, settings,
caches, the routing table). Every full collection of the cyclic garbage collector walks all of
them, which takes tens of milliseconds, and every request in flight waits that long: that was
most of a loaded gateway's p99. Frozen after startup, they are left out of later collections,
which then walk only what the requests themselves allocate.

A startup object that later becomes part of unreachable cycle is never collected; the startup
state is built once and replaced rarely (a routes reload), so that is bounded.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Collect what startup left behind, then move every surviving object out of the
    collector's reach (``gc.freeze``). Call once, when the worker is ready to serve."""
    gc.collect()
    gc.freeze()
