"""Load generators: wrk for closed-loop throughput and latency, small asyncio clients for
time to first byte and fixed-rate (open-loop) runs."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

WRK_SCRIPT = Path(__file__).with_name("wrk_post.lua")


@dataclass
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    failures: int
    # CPU of the process under test per request, when it was measured.
    cpu_ms_per_request: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    connections: int,
    seconds: float,
    cpu: str | None,
) -> LoadResult:
    """Closed loop: ``connections`` clients each send the next request when one returns."""
    prefix = ["taskset", "-c", cpu] if cpu is not None else []
    command = [
        *prefix,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
        url,
    ]
    environment = {**os.environ, **wrk_environment(body, headers)}
    output = subprocess.run(
        command, env=environment, capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    values = {k: int(v) for k, v in re.findall(r"^BENCH_(\w+) (\d+)$", output, re.MULTILINE)}
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    failures = values["NON2XX"] + (sum(map(int, socket_errors.groups())) if socket_errors else 0)
    return LoadResult(
        requests=values["REQUESTS"],
        seconds=values["DURATION_US"] / 1e6,
        p50_ms=values["P50_US"] / 1000,
        p90_ms=values["P90_US"] / 1000,
        p99_ms=values["P99_US"] / 1000,
        failures=failures,
    )


def wrk_environment(body: bytes, headers: Mapping[str, str]) -> dict[str, str]:
    """What ``wrk_post.lua`` reads: the body, and the headers as ``Name: value`` lines."""
    lines = "\n".join(f"{name}: {value}" for name, value in headers.items())
    return {"BENCH_BODY": body.decode(), "BENCH_HEADERS": lines}


def warm_up(
    url: str, bodies: list[bytes], headers: Mapping[str, str], cpu: str | None, seconds: float = 1.0
) -> None:
    """A short closed loop with each body before anything is measured: upstream connections,
    access tokens and caches are in place, and every worker process has had requests."""
    for body in bodies:
        wrk(url, body, headers, 8, seconds, cpu)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def first_byte_ms(
    url: str, body: bytes, headers: Mapping[str, str], count: int
) -> list[float]:
    """Time to the first streamed content event, one request at a time."""
    headers = {**headers, "Content-Type": "application/json"}
    samples: list[float] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                if response.status != 200:
                    raise RuntimeError(f"{url} answered {response.status}")
                async for line in response.content:
                    if b'"content":"' in line and b'"content":""' not in line:
                        samples.append((time.perf_counter() - started) * 1000)
                        break
                await response.read()
    return samples


async def open_loop(
    url: str, body: bytes, headers: Mapping[str, str], rate: float, seconds: float
) -> LoadResult:
    """Fixed rate: request i starts at t0 + i/rate whatever happened before, and its latency
    counts from that planned start (no coordinated omission)."""
    headers = {**headers, "Content-Type": "application/json"}
    total = int(rate * seconds)
    latencies: list[float] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()

        async def one(planned: float) -> None:
            nonlocal failures
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        failures += 1
            except aiohttp.ClientError:
                failures += 1
            latencies.append((time.perf_counter() - planned) * 1000)

        tasks = []
        for index in range(total):
            planned = started + index / rate
            delay = planned - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(planned)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return LoadResult(
        requests=len(latencies),
        seconds=elapsed,
        p50_ms=percentile(latencies, 0.50),
        p90_ms=percentile(latencies, 0.90),
        p99_ms=percentile(latencies, 0.99),
        failures=failures,
    )
