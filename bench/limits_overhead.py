"""What the rate limiter adds to a request: the gateway with limits in memory and in Redis,
measured against the same gateway without limits, in one run.

Two measurements:

* the limit step alone (``RateLimiter.admit`` plus settling), in this process: the cost per
  request with no limit, with four limits in memory, and with four limits in Redis;
* end to end: one ``xrouter serve`` process (core 0) under a closed loop of requests (the
  emulator and the load share core 1), once per configuration, with the same limits (set high
  enough never to refuse, so every request does the full check and settle).

Results are printed as tables of ratios and differences against "no limits"; absolute numbers
depend on the machine.

    python bench/limits_overhead.py                 # about a minute
    python bench/limits_overhead.py --smoke         # seconds: checks the harness, not the numbers
    python bench/limits_overhead.py --redis-url redis://127.0.0.1:6379/14
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).parent))

from processes import Process, cores, free_port, python_module, start

from xrouter.emulators.server import GIGACHAT_EMULATOR_CREDENTIALS
from xrouter.keys.cache import ActiveKey
from xrouter.keys.hashing import KeyHasher
from xrouter.keys.service import KeyService
from xrouter.limits.build import build_limiter
from xrouter.providers.base import ModelTarget
from xrouter.settings import Settings
from xrouter.storage.database import create_engine, session_factory
from xrouter.storage.migrate import upgrade

PEPPER = "bench-limits-pepper-not-secret"
ROUNDS = 4
HIGH = 2_000_000_000  # never reached: every request does the full check and settle
LIMITS: dict[str, object] = {
    "rate_limit_key_rpm": HIGH,
    "rate_limit_key_tpm": HIGH,
    "rate_limit_key_tpd": HIGH,
    "rate_limit_providers": {"gigachat": {"rpm": HIGH}},
}
CONFIGURATIONS: dict[str, dict[str, object]] = {
    "no limits": {"rate_limit_backend": "memory"},
    "memory": {"rate_limit_backend": "memory", **LIMITS},
    "redis": {"rate_limit_backend": "redis", **LIMITS},
}
BODY = {
    "model": "gigachat/GigaChat-2-Max",
    "messages": [{"role": "user", "content": "Привет! Сколько будет дважды два?"}],
    "max_tokens": 64,
}


@dataclass
class Run:
    latencies_ms: list[float]
    seconds: float

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds

    def __add__(self, other: Run) -> Run:
        return Run(self.latencies_ms + other.latencies_ms, self.seconds + other.seconds)

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def limiter_step(settings: Settings, calls: int) -> float:
    """Microseconds per admit-and-settle through the limiter ``settings`` builds."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        limiter = build_limiter(settings, CollectorRegistry(), session)
        key = ActiveKey(id="key_bench", name="bench", owner=None, prefix="p")
        target = ModelTarget("gigachat", "GigaChat-2-Max")
        for _ in range(200):
            (await limiter.admit(key, target, 100)).settle(80)
        started = time.perf_counter()
        for _ in range(calls):
            (await limiter.admit(key, target, 100)).settle(80)
            await asyncio.sleep(0)  # let the settlement run, as it would between requests
        elapsed = time.perf_counter() - started
        await limiter.close()
    return elapsed / calls * 1e6


async def closed_loop(url: str, key: str, concurrency: int, seconds: float) -> Run:
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {key}"}
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = await client.post(f"{url}/v1/chat/completions", json=BODY, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"{response.status_code}: {response.text[:200]}")
            latencies.append((time.perf_counter() - started) * 1000)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        for _ in range(20):  # warm up: connections, credentials, caches
            await client.post(f"{url}/v1/chat/completions", json=BODY, headers=headers)
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return Run(latencies, time.perf_counter() - started)


def as_environment(value: object) -> str:
    return json.dumps(value) if isinstance(value, dict) else str(value)


def create_key(database_url: str) -> str:
    async def create() -> str:
        engine = create_engine(database_url)
        try:
            service = KeyService(session_factory(engine), KeyHasher(PEPPER.encode()))
            return (await service.create("bench")).key
        finally:
            await engine.dispose()

    return asyncio.run(create())


def end_to_end(
    workdir: Path, redis_url: str, seconds: float, concurrencies: list[int]
) -> dict[tuple[str, int], Run]:
    server_cpu, load_cpu = ("0", "1") if cores() >= 2 else (None, None)
    port = free_port()
    emulator = start(
        "emulator",
        python_module("-m", "xrouter", "emulate", "gigachat", "--port", str(port)),
        cpu=load_cpu,
        port=port,
        ready_path="/api/v1/models",
        log=workdir / "emulator.log",
    )
    database_url = f"sqlite+aiosqlite:///{workdir}/bench.db"
    upgrade(database_url)
    key = create_key(database_url)
    gateways: dict[str, Process] = {}
    results: dict[tuple[str, int], Run] = {}
    try:
        for name, extra in CONFIGURATIONS.items():
            port = free_port()
            environment = {
                "XROUTER_DATABASE_URL": database_url,
                "XROUTER_KEY_PEPPER": PEPPER,
                "XROUTER_LOG_LEVEL": "warning",
                "XROUTER_REDIS_URL": redis_url,
                "XROUTER_EMULATE_MISSING_PROVIDERS": "false",
                "XROUTER_GIGACHAT_CREDENTIALS": GIGACHAT_EMULATOR_CREDENTIALS,
                "XROUTER_GIGACHAT_BASE_URL": f"{emulator.url}/api/v1",
                "XROUTER_GIGACHAT_AUTH_URL": f"{emulator.url}/api/v2/oauth",
                **{f"XROUTER_{key.upper()}": as_environment(value) for key, value in extra.items()},
            }
            gateways[name] = start(
                name,
                python_module("-m", "xrouter", "serve", "--port", str(port)),
                cpu=server_cpu,
                port=port,
                ready_path="/health",
                env=environment,
                cwd=workdir,
                log=workdir / f"gateway-{name.replace(' ', '-')}.log",
            )
        # Interleaved rounds, one gateway under load at a time: drift over the run (a growing
        # usage table, a warming emulator) spreads evenly over the configurations.
        for _ in range(ROUNDS):
            for concurrency in concurrencies:
                for name, gateway in gateways.items():
                    run = asyncio.run(closed_loop(gateway.url, key, concurrency, seconds / ROUNDS))
                    previous = results.get((name, concurrency))
                    results[name, concurrency] = run if previous is None else previous + run
    finally:
        for gateway in gateways.values():
            gateway.stop()
        emulator.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--seconds", type=float, default=8.0, help="per configuration and load")
    parser.add_argument("--smoke", action="store_true", help="a few seconds in all")
    args = parser.parse_args()
    seconds = 1.0 if args.smoke else args.seconds
    calls = 2_000 if args.smoke else 50_000
    concurrencies = [1, 16]

    print(f"Limit step alone ({calls} admit+settle calls, one at a time)")
    print(f"{'configuration':<14} {'us/request':>10} {'added us':>9}")
    step: dict[str, float] = {}
    for name, extra in CONFIGURATIONS.items():
        settings = Settings(key_pepper=PEPPER, redis_url=args.redis_url, **extra)  # type: ignore[arg-type]
        step[name] = asyncio.run(limiter_step(settings, calls))
        print(f"{name:<14} {step[name]:>10.1f} {step[name] - step['no limits']:>9.1f}")

    with tempfile.TemporaryDirectory(prefix="xrouter-bench-limits-") as directory:
        results = end_to_end(Path(directory), args.redis_url, seconds, concurrencies)
    print()
    print(f"End to end, one gateway process, {seconds:g} s per row (ratios against no limits)")
    print(
        f"{'configuration':<14} {'clients':>7} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'req/s x':>8} {'p50 +ms':>8} {'p99 +ms':>8}"
    )
    for concurrency in concurrencies:
        baseline = results["no limits", concurrency]
        for name in CONFIGURATIONS:
            run = results[name, concurrency]
            print(
                f"{name:<14} {concurrency:>7} {run.rate:>8.0f} {run.percentile(0.5):>7.2f} "
                f"{run.percentile(0.99):>7.2f} {run.rate / baseline.rate:>8.3f} "
                f"{run.percentile(0.5) - baseline.percentile(0.5):>8.3f} "
                f"{run.percentile(0.99) - baseline.percentile(0.99):>8.3f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
