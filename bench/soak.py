"""The memory soak: the gateway under steady load for a fixed time, its RSS sampled every
few seconds, and the slope of RSS over time (a leak shows as a slope that does not flatten)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from load import WRK_SCRIPT, wrk_environment
from processes import Process

SAMPLE_SECONDS = 10.0
_REQUESTS_SAMPLE = re.compile(r"^xrouter_requests_total\{[^}]*\} ([0-9.e+]+)$", re.MULTILINE)
_USAGE_LAG_SAMPLE = re.compile(r"^xrouter_usage_flush_lag_seconds ([0-9.e+]+)$", re.MULTILINE)


@dataclass
class Sample:
    seconds: float
    requests: int
    rss_mb: float
    # Age of the oldest usage record not yet written: a writer that keeps up stays near its
    # flush interval; one that falls behind holds ever more records in memory.
    usage_lag_seconds: float


def sample(gateway: Process, started: float) -> Sample:
    """Requests the gateway has answered so far and its usage writer's lag, from its own
    metrics, with its RSS."""
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    requests = int(sum(float(value) for value in _REQUESTS_SAMPLE.findall(text)))
    lag = _USAGE_LAG_SAMPLE.search(text)
    return Sample(
        time.monotonic() - started,
        requests,
        gateway.rss_mb(),
        float(lag.group(1)) if lag is not None else 0.0,
    )


def slope_mb_per_minute(samples: list[Sample]) -> float:
    """Least-squares slope of RSS over time."""
    if len(samples) < 2:
        return 0.0
    xs = [sample.seconds / 60 for sample in samples]
    ys = [sample.rss_mb for sample in samples]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def sample_interval(seconds: float) -> float:
    return min(SAMPLE_SECONDS, max(0.5, seconds / 6))


def soak(
    gateway: Process,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    seconds: float,
    connections: int,
    load_cpu: str | None,
) -> list[Sample]:
    """Closed-loop load for ``seconds`` with RSS sampled every ``SAMPLE_SECONDS`` (more often
    for a short soak, so that a few seconds still give a slope)."""
    interval = sample_interval(seconds)
    prefix = ["taskset", "-c", load_cpu] if load_cpu is not None else []
    command = [
        *prefix,
        *("wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s"),
        *("--timeout", "10s", "-s", str(WRK_SCRIPT), url),
    ]
    environment = {**os.environ, **wrk_environment(body, headers)}
    started = time.monotonic()
    samples = [sample(gateway, started)]
    with subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as load:
        while True:
            next_at = started + len(samples) * interval
            try:
                load.wait(max(0.0, next_at - time.monotonic()))
                break  # the load has ended: the last sample is taken below
            except subprocess.TimeoutExpired:
                pass
            samples.append(sample(gateway, started))
        output = load.communicate()[0]
    samples.append(sample(gateway, started))
    if "BENCH_REQUESTS" not in output:
        raise RuntimeError(f"wrk failed during the soak: {output[-500:]}")
    return samples


def report_lines(samples: list[Sample], seconds: float) -> list[str]:
    """The soak's table and its summary, as markdown lines."""
    lines = [
        f"\n### Memory soak, {seconds:g} s of closed-loop load, RSS every "
        f"{sample_interval(seconds):.3g} s\n",
        "| elapsed s | requests served | RSS MiB | usage write lag s |",
        "|---:|---:|---:|---:|",
    ]
    step = max(1, len(samples) // 30)
    shown = samples[::step] if samples[-1] in samples[::step] else [*samples[::step], samples[-1]]
    lines += [
        f"| {s.seconds:.1f} | {s.requests:,} | {s.rss_mb:.1f} | {s.usage_lag_seconds:.2f} |"
        for s in shown
    ]
    # The first fifth is warm-up (caches, pools, allocator arenas filling): the steady slope
    # is the one that tells a leak.
    steady = samples[len(samples) // 5 :] if len(samples) >= 5 else samples
    past = next((s for s in samples if s.requests - samples[0].requests >= 100_000), None)
    lines.append(
        f"\nRSS slope: {slope_mb_per_minute(samples):+.2f} MiB/min over the whole soak, "
        f"{slope_mb_per_minute(steady):+.2f} MiB/min after warm-up; "
        f"{samples[-1].requests - samples[0].requests:,} requests served."
    )
    lines.append(
        f"RSS after 100k requests: {past.rss_mb:.1f} MiB (at {past.seconds:.0f} s)."
        if past is not None
        else "RSS after 100k requests: not reached (soak too short)."
    )
    lines.append(f"RSS at the end: {samples[-1].rss_mb:.1f} MiB.")
    lines.append(
        "Usage writer lag (oldest record not yet written): at most "
        f"{max(s.usage_lag_seconds for s in samples):.2f} s."
    )
    return lines
