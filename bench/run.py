"""XRouter benchmark: the gateway against a direct-to-emulator baseline, in one run.

Layout on a 2-core machine: the process under test (gateway or the bare passthrough proxy)
is pinned to core 0; the emulator upstream and the load generator share core 1. Only one
process under test takes load at a time. Results are ratios and differences against the
direct baseline of the same run; absolute numbers depend on the machine.

    python bench/run.py              # the full run (a few minutes), table to stdout and a file
    python bench/run.py --smoke      # seconds: checks the harness works, not the numbers
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))

from load import LoadResult, first_byte_ms, open_loop, percentile, wrk
from processes import Process, cores, free_port, python_module, start

from xrouter.emulators.server import GIGACHAT_EMULATOR_CREDENTIALS

MODEL = "GigaChat-2-Max"
MESSAGES = [{"role": "user", "content": "Привет! Сколько будет дважды два?"}]
RESULTS = Path(__file__).with_name("results")


@dataclass
class Target:
    name: str
    process: Process | None
    url: str
    authorization: str
    model: str

    def body(self, stream: bool = False) -> bytes:
        return json.dumps(
            {"model": self.model, "messages": MESSAGES, "stream": stream}, ensure_ascii=False
        ).encode()


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)

    def add(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)


def emulator_token(url: str) -> str:
    response = httpx.post(
        f"{url}/api/v2/oauth",
        headers={
            "Authorization": f"Basic {GIGACHAT_EMULATOR_CREDENTIALS}",
            "RqUID": "6f0b1291-c7f3-43c6-bb2e-9f3efb2dc98e",
        },
        data={"scope": "GIGACHAT_API_PERS"},
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def gateway_environment(emulator_url: str, workdir: Path) -> dict[str, str]:
    return {
        "XROUTER_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/bench.db",
        "XROUTER_KEY_PEPPER": "bench-pepper-not-secret",
        "XROUTER_LOG_LEVEL": "warning",
        "XROUTER_EMULATE_MISSING_PROVIDERS": "false",
        "XROUTER_GIGACHAT_CREDENTIALS": GIGACHAT_EMULATOR_CREDENTIALS,
        "XROUTER_GIGACHAT_BASE_URL": f"{emulator_url}/api/v1",
        "XROUTER_GIGACHAT_AUTH_URL": f"{emulator_url}/api/v2/oauth",
    }


def create_key(environment: dict[str, str], workdir: Path, gateway_url: str) -> str:
    created = subprocess.run(
        python_module("-m", "xrouter", "keys", "create", "--name", "bench", "--json"),
        env={**os.environ, **environment},
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    )
    key = str(json.loads(created.stdout)["key"])
    deadline = time.monotonic() + 15
    while (
        httpx.get(
            f"{gateway_url}/v1/models", headers={"Authorization": f"Bearer {key}"}
        ).status_code
        != 200
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("the gateway never accepted the benchmark key")
        time.sleep(0.1)
    return key


def closed_loop(
    report: Report,
    targets: list[Target],
    connections: int,
    seconds: float,
    load_cpu: str | None,
    stream: bool = False,
) -> dict[str, LoadResult]:
    results: dict[str, LoadResult] = {}
    kind = "stream" if stream else "json"
    report.add(f"\n### Closed loop, {kind}, {connections} connection(s), {seconds:g} s each\n")
    report.add(
        "| target | req/s | p50 ms | p90 ms | p99 ms | added p50 ms | added p99 ms "
        "| CPU ms/req | failures |"
    )
    report.add("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for target in targets:
        cpu_before = target.process.cpu_seconds() if target.process else 0.0
        result = wrk(
            target.url, target.body(stream), target.authorization, connections, seconds, load_cpu
        )
        cpu = (target.process.cpu_seconds() - cpu_before) if target.process else 0.0
        results[target.name] = result
        direct = results[targets[0].name]
        cpu_text = (
            f"{cpu * 1000 / result.requests:.3f}" if target.process and result.requests else "-"
        )
        report.add(
            f"| {target.name} | {result.rps:,.0f} | {result.p50_ms:.2f} | {result.p90_ms:.2f} | "
            f"{result.p99_ms:.2f} | {result.p50_ms - direct.p50_ms:+.2f} | "
            f"{result.p99_ms - direct.p99_ms:+.2f} | {cpu_text} | {result.failures} |"
        )
    return results


def first_byte(report: Report, targets: list[Target], count: int) -> None:
    report.add(f"\n### Streaming time to first content byte, sequential, {count} requests\n")
    report.add("| target | p50 ms | p99 ms | added p50 ms | added p99 ms |")
    report.add("|---|---:|---:|---:|---:|")
    baseline: list[float] = []
    for target in targets:
        samples = asyncio.run(
            first_byte_ms(target.url, target.body(True), target.authorization, count)
        )
        baseline = baseline or samples
        report.add(
            f"| {target.name} | {percentile(samples, 0.5):.2f} | {percentile(samples, 0.99):.2f} | "
            f"{percentile(samples, 0.5) - percentile(baseline, 0.5):+.2f} | "
            f"{percentile(samples, 0.99) - percentile(baseline, 0.99):+.2f} |"
        )


def fixed_rate(report: Report, targets: list[Target], rate: float, seconds: float) -> int:
    report.add(f"\n### Open loop at {rate:g} req/s for {seconds:g} s\n")
    report.add("| target | achieved req/s | p50 ms | p90 ms | p99 ms | added p99 ms | failures |")
    report.add("|---|---:|---:|---:|---:|---:|---:|")
    baseline: LoadResult | None = None
    failures = 0
    for target in targets:
        result = asyncio.run(
            open_loop(target.url, target.body(), target.authorization, rate, seconds)
        )
        baseline = baseline or result
        report.add(
            f"| {target.name} | {result.rps:,.0f} | {result.p50_ms:.2f} | {result.p90_ms:.2f} | "
            f"{result.p99_ms:.2f} | {result.p99_ms - baseline.p99_ms:+.2f} | {result.failures} |"
        )
        failures += result.failures
    return failures


def start_targets(
    workdir: Path, server_cpu: str | None, load_cpu: str | None
) -> tuple[list[Process], list[Target]]:
    """The emulator, the bare passthrough and the gateway, each ready to take load."""
    processes: list[Process] = []
    try:
        port = free_port()
        emulator = start(
            "emulator",
            python_module("-m", "xrouter", "emulate", "gigachat", "--port", str(port)),
            cpu=load_cpu,
            port=port,
            ready_path="/api/v1/models",
            log=workdir / "emulator.log",
        )
        processes.append(emulator)
        token = emulator_token(emulator.url)
        port = free_port()
        passthrough = start(
            "passthrough",
            python_module(
                str(Path(__file__).with_name("passthrough.py")),
                *("--port", str(port), "--upstream", f"{emulator.url}/api/v1/chat/completions"),
                *("--authorization", f"Bearer {token}"),
            ),
            cpu=server_cpu,
            port=port,
            ready_path="/",
            log=workdir / "passthrough.log",
        )
        processes.append(passthrough)
        environment = gateway_environment(emulator.url, workdir)
        port = free_port()
        gateway = start(
            "gateway",
            python_module("-m", "xrouter", "serve", "--port", str(port)),
            cpu=server_cpu,
            port=port,
            ready_path="/health",
            env=environment,
            cwd=workdir,
            log=workdir / "gateway.log",
        )
        processes.append(gateway)
        key = create_key(environment, workdir, gateway.url)
    except BaseException:
        for process in reversed(processes):
            process.stop()
        raise
    chat = "/v1/chat/completions"
    targets = [
        Target("direct (emulator)", None, f"{emulator.url}/api{chat}", f"Bearer {token}", MODEL),
        Target("bare aiohttp passthrough", passthrough, f"{passthrough.url}{chat}", "", MODEL),
        Target("xrouter", gateway, f"{gateway.url}{chat}", f"Bearer {key}", f"gigachat/{MODEL}"),
    ]
    return processes, targets


def measure(
    report: Report, targets: list[Target], smoke: bool, seconds: float, cpu: str | None
) -> int:
    """Every scenario; returns the number of failed requests (a valid run has none)."""
    failures = 0
    widest = 4 if smoke else 64
    for connections in (1, 4) if smoke else (1, 16, 64):
        results = closed_loop(report, targets, connections, seconds, cpu)
        failures += sum(result.failures for result in results.values())
        if connections == widest:
            ratio = results["xrouter"].rps / results["bare aiohttp passthrough"].rps
            report.add(f"\nxrouter throughput = {ratio:.0%} of the bare passthrough")
    results = closed_loop(report, targets, 4 if smoke else 16, seconds, cpu, stream=True)
    failures += sum(result.failures for result in results.values())
    first_byte(report, [targets[0], targets[2]], 20 if smoke else 300)
    for rate in (50,) if smoke else (500, 1000):
        failures += fixed_rate(report, [targets[0], targets[2]], rate, 1.0 if smoke else 30.0)
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="seconds; checks the harness only")
    parser.add_argument("--seconds", type=float, default=10.0, help="each closed-loop run")
    parser.add_argument("--output", type=Path, help="markdown file for the results")
    args = parser.parse_args()
    seconds = 1.0 if args.smoke else args.seconds
    two_cores = cores() >= 2
    server_cpu, load_cpu = ("0", "1") if two_cores else (None, None)
    layout = (
        "server under test on core 0; emulator and load generator (wrk, 1 thread) on core 1"
        if two_cores
        else "no pinning (fewer than 2 cores)"
    )
    report = Report()
    report.add(f"## XRouter benchmark, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC\n")
    report.add(f"Layout: {layout}. Python {sys.version.split()[0]}.")
    report.add("Gateway features on: API-key auth, usage recording.")
    with tempfile.TemporaryDirectory(prefix="xrouter-bench-") as directory:
        processes, targets = start_targets(Path(directory), server_cpu, load_cpu)
        try:
            failures = measure(report, targets, args.smoke, seconds, load_cpu)
            gateway, passthrough = targets[2].process, targets[1].process
            assert gateway is not None
            assert passthrough is not None
            report.add(
                f"\nRSS after the run: xrouter {gateway.rss_mb():.0f} MiB, "
                f"passthrough {passthrough.rss_mb():.0f} MiB"
            )
        finally:
            for process in reversed(processes):
                process.stop()
    output = args.output or (None if args.smoke else RESULTS / f"{datetime.date.today()}.md")
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text("\n".join(report.lines) + "\n")
        print(f"\nwritten to {output}")
    if failures:
        print(f"{failures} requests failed: the figures above are not valid", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
