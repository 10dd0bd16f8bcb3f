"""XRouter benchmark: the gateway against a direct-to-emulator baseline, in one run.

Layout on a 2-core machine: the process under test (the gateway, the bare passthrough proxy,
or a peer gateway) is pinned to core 0; the emulator upstream, the load generators (wrk, and
this script's own asyncio clients) share core 1. Only one process under test takes load at a
time. The 2-worker row spreads the gateway over both cores, sharing core 1 with the emulator
and wrk, and says how much CPU each used. Results are ratios and differences against the
direct baseline of the same run; absolute numbers depend on the machine.

    python bench/run.py                  # the full run (a few minutes), table to stdout and a file
    python bench/run.py --smoke          # seconds: checks the harness works, not the numbers
    python bench/run.py --soak 600       # memory soak: RSS every 10 s under load, and its slope
    python bench/run.py --peers litellm  # add LiteLLM's proxy (pip install -e '.[bench-peers]')
    python bench/run.py --peers portkey  # add Portkey's gateway (installed with npm if need be)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import resource
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from load import LoadResult, first_byte_ms, open_loop, percentile, warm_up, wrk
from peers import SKIPPED, litellm_available, portkey_installed, start_litellm, start_portkey
from processes import Process, cores
from soak import report_lines, soak
from targets import (
    MODEL,
    REDIS_TIMEOUT_MS,
    ROUTE,
    Target,
    direct_target,
    emulator_token,
    error_answers,
    gateway_target,
    limit_checks,
    passthrough_target,
    start_emulator,
)

RESULTS = Path(__file__).with_name("results")
XROUTER = "xrouter"
XROUTER_MEMORY = "xrouter, limits in memory"
PASSTHROUGH = "bare aiohttp passthrough"
PEERS = ("litellm", "portkey")
# Closed-loop runs are split into this many slices, the targets taking them in turns.
ROUNDS = 3


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)

    def add(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)


@dataclass
class Layout:
    """Which cores the server under test and the load side use."""

    cores: int
    server_cpu: str | None
    load_cpu: str | None
    all_cpus: str | None

    @classmethod
    def detect(cls) -> Layout:
        count = cores()
        if count >= 2:
            return cls(count, "0", "1", "0,1")
        return cls(count, None, None, None)

    def describe(self) -> str:
        if self.server_cpu is None:
            return "no pinning (fewer than 2 cores)"
        return (
            f"server under test (gateway, passthrough, peers) pinned to core {self.server_cpu}; "
            f"emulator, wrk (1 thread) and the asyncio load clients of this script pinned to "
            f"core {self.load_cpu}"
        )


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_lines(layout: Layout) -> list[str]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return [
        f"Machine: {layout.cores} core(s) available ({model}), Linux {platform.release()}, "
        f"Python {sys.version.split()[0]}; load average at the start: {load}.",
        f"Layout: {layout.describe()}.",
        "Gateway features on: API-key auth, rate limits (4 limits per request, in Redis unless "
        f"said otherwise, with a {REDIS_TIMEOUT_MS} ms budget per Redis call instead of the "
        "default 5 ms, so that a busy machine does not push the limiter onto its memory "
        "fallback), a route alias, usage recording (SQLite), Prometheus metrics, the access log "
        "(info level, to a file).",
    ]


def closed_loop(
    report: Report,
    targets: list[Target],
    connections: int,
    seconds: float,
    load_cpu: str | None,
    stream: bool = False,
    rounds: int = 1,
) -> dict[str, LoadResult]:
    """Each target under ``connections`` closed-loop clients for ``seconds``, split into
    ``rounds`` slices that the targets take in turns: a machine whose speed drifts during the
    run (a shared VM) slows every target alike instead of the ones measured last. A target's
    row is its median slice by throughput."""
    kind = "stream" if stream else "json"
    left_out = [target.name for target in targets if stream and not target.streams]
    targets = [target for target in targets if target.name not in left_out]
    slice_seconds = max(1.0, round(seconds / rounds))
    slices: dict[str, list[LoadResult]] = {target.name: [] for target in targets}
    for _ in range(rounds):
        for target in targets:
            slices[target.name].append(
                one_slice(target, connections, slice_seconds, load_cpu, stream)
            )
    results = {name: median_slice(runs) for name, runs in slices.items()}
    taken = (
        f"{rounds} slices of {slice_seconds:g} s each, targets in turns; the median slice"
        if rounds > 1
        else f"{slice_seconds:g} s each"
    )
    report.add(f"\n### Closed loop, {kind}, {connections} connection(s), {taken}\n")
    report.add(
        "| target | req/s | p50 ms | p90 ms | p99 ms | added p50 ms | added p99 ms "
        "| CPU ms/req | failures |"
    )
    report.add("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, result in results.items():
        result.failures = sum(run.failures for run in slices[name])  # every slice's
    direct = results[targets[0].name]
    for target in targets:
        result = results[target.name]
        cpu = f"{result.cpu_ms_per_request:.3f}" if result.cpu_ms_per_request else "-"
        report.add(
            f"| {target.name} | {result.rps:,.0f} | {result.p50_ms:.2f} | {result.p90_ms:.2f} | "
            f"{result.p99_ms:.2f} | {result.p50_ms - direct.p50_ms:+.2f} | "
            f"{result.p99_ms - direct.p99_ms:+.2f} | {cpu} | {result.failures} |"
        )
    if rounds > 1:
        spreads = ", ".join(
            f"{name} {min(run.rps for run in runs):,.0f}-{max(run.rps for run in runs):,.0f}"
            for name, runs in slices.items()
        )
        report.add(f"\nReq/s of the slices, lowest to highest: {spreads}.")
    if left_out:
        report.add(f"Not run (cannot relay streams here): {', '.join(left_out)}.")
    return results


def one_slice(
    target: Target, connections: int, seconds: float, load_cpu: str | None, stream: bool
) -> LoadResult:
    """One closed-loop run, with the CPU the target used per request."""
    cpu_before = target.process.cpu_seconds() if target.process else 0.0
    result = wrk(target.url, target.body(stream), target.headers, connections, seconds, load_cpu)
    if target.process and result.requests:
        cpu = target.process.cpu_seconds() - cpu_before
        result.cpu_ms_per_request = cpu * 1000 / result.requests
    return result


def median_slice(runs: list[LoadResult]) -> LoadResult:
    """The run with the median throughput (of an even number, the slower middle one)."""
    return sorted(runs, key=lambda run: run.rps)[(len(runs) - 1) // 2]


def first_byte(report: Report, targets: list[Target], count: int) -> None:
    report.add(f"\n### Streaming time to first content byte, sequential, {count} requests\n")
    report.add("| target | p50 ms | p99 ms | added p50 ms | added p99 ms |")
    report.add("|---|---:|---:|---:|---:|")
    baseline: list[float] = []
    for target in targets:
        samples = asyncio.run(first_byte_ms(target.url, target.body(True), target.headers, count))
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
        result = asyncio.run(open_loop(target.url, target.body(), target.headers, rate, seconds))
        baseline = baseline or result
        report.add(
            f"| {target.name} | {result.rps:,.0f} | {result.p50_ms:.2f} | {result.p90_ms:.2f} | "
            f"{result.p99_ms:.2f} | {result.p99_ms - baseline.p99_ms:+.2f} | {result.failures} |"
        )
        failures += result.failures
    return failures


def ratio_lines(report: Report, results: dict[str, LoadResult]) -> None:
    """Throughput and CPU per request of each gateway against the bare passthrough."""
    passthrough = results[PASSTHROUGH]
    for name, result in results.items():
        if name in (PASSTHROUGH, "direct (emulator)") or not passthrough.rps:
            continue
        line = f"- {name}: throughput {result.rps / passthrough.rps:.0%} of the passthrough"
        if result.cpu_ms_per_request and passthrough.cpu_ms_per_request:
            line += (
                f", CPU {result.cpu_ms_per_request:.3f} ms per request "
                f"({result.cpu_ms_per_request / passthrough.cpu_ms_per_request:.2f}x the "
                "passthrough's)"
            )
        report.add(line)
    for peer in PEERS:
        if peer in results and results[peer].rps:
            ratio = results[XROUTER].rps / results[peer].rps
            report.add(f"- xrouter serves {ratio:.1f}x the requests per second of {peer}")


def measure(
    report: Report, targets: list[Target], smoke: bool, seconds: float, layout: Layout
) -> int:
    """Every scenario; returns the number of failed requests (a valid run has none)."""
    failures = 0
    widest = 4 if smoke else 64
    capacity = 0.0
    rounds = 1 if smoke else ROUNDS
    for connections in (1, 4) if smoke else (1, 16, 64):
        results = closed_loop(report, targets, connections, seconds, layout.load_cpu, rounds=rounds)
        failures += sum(result.failures for result in results.values())
        if connections == widest:
            report.add("")
            ratio_lines(report, results)
            capacity = results[XROUTER].rps
    streaming = 4 if smoke else 16
    results = closed_loop(
        report, targets, streaming, seconds, layout.load_cpu, stream=True, rounds=rounds
    )
    failures += sum(result.failures for result in results.values())
    report.add("")
    ratio_lines(report, results)
    named = {target.name: target for target in targets}
    first_byte(
        report,
        [
            named[name]
            for name in ("direct (emulator)", XROUTER, *PEERS)
            if name in named and named[name].streams
        ],
        20 if smoke else 300,
    )
    # Open loop: fixed rates, and a quarter of the measured capacity (where the added p99 is
    # the gateway's own, not queueing on a saturated core).
    rates = [50.0] if smoke else [500.0, 1000.0]
    rates.append(max(10.0, round(capacity / 4, -1)))
    open_targets = [named[name] for name in ("direct (emulator)", XROUTER, XROUTER_MEMORY)]
    for rate in rates:
        # Not added to ``failures``: beyond a target's capacity an open loop queues without
        # bound until connections fail, and those failures are the result, not a fault.
        fixed_rate(report, open_targets, rate, 1.0 if smoke else 30.0)
    return failures


def workers_row(
    report: Report,
    emulator: Process,
    workdir: Path,
    workers: int,
    one_worker: LoadResult,
    one_worker_rss: float,
    seconds: float,
    layout: Layout,
    smoke: bool,
) -> int:
    """The same closed loop against ``workers`` worker processes spread over every core."""
    connections = 4 if smoke else 64
    target = gateway_target(
        f"xrouter, {workers} workers",
        emulator,
        workdir / "workers",
        layout.all_cpus,
        workers=workers,
    )
    assert target.process is not None
    try:
        warm_up(target.url, [target.body()], target.headers, layout.load_cpu, 2.0)
        gateway_before = target.process.cpu_seconds()
        emulator_before = emulator.cpu_seconds()
        wrk_before = children_cpu_seconds()
        result = wrk(
            target.url, target.body(), target.headers, connections, seconds, layout.load_cpu
        )
        gateway_cpu = target.process.cpu_seconds() - gateway_before
        emulator_cpu = emulator.cpu_seconds() - emulator_before
        wrk_cpu = children_cpu_seconds() - wrk_before
        supervisor_rss, *worker_rss = target.process.rss_each_mb()
    finally:
        target.process.stop()
    report.add(f"\n### Workers: closed loop, json, {connections} connections, {seconds:g} s\n")
    report.add("| gateway | cores | req/s | p50 ms | p99 ms | scaling | CPU ms/req | RSS MiB |")
    report.add("|---|---|---:|---:|---:|---:|---:|---:|")
    report.add(
        f"| xrouter, 1 worker | {layout.server_cpu or 'any'} | {one_worker.rps:,.0f} | "
        f"{one_worker.p50_ms:.2f} | {one_worker.p99_ms:.2f} | 1.00x | "
        f"{one_worker.cpu_ms_per_request or 0:.3f} | {one_worker_rss:.0f} |"
    )
    report.add(
        f"| {target.name} | {layout.all_cpus or 'any'} | {result.rps:,.0f} | {result.p50_ms:.2f} | "
        f"{result.p99_ms:.2f} | {result.rps / one_worker.rps if one_worker.rps else 0:.2f}x | "
        f"{gateway_cpu * 1000 / max(result.requests, 1):.3f} | supervisor {supervisor_rss:.0f}, "
        f"children {' + '.join(f'{rss:.0f}' for rss in worker_rss)} |"
    )
    elapsed = result.seconds or seconds
    report.add(
        f"\nCPU during the {workers}-worker run (cores busy): gateway workers "
        f"{gateway_cpu / elapsed:.2f}, emulator {emulator_cpu / elapsed:.2f}, wrk "
        f"{wrk_cpu / elapsed:.2f} of {layout.cores}. The emulator and wrk run on core "
        f"{layout.load_cpu or 'any'}, so the second worker gets what they leave of it."
    )
    return result.failures


def limiter_line(report: Report, target: Target) -> None:
    assert target.process is not None
    checks, errors = limit_checks(target.process.url)
    total = sum(checks.values()) or 1
    report.add(
        f"\nRate-limit checks of '{target.name}' by deciding backend: "
        + ", ".join(
            f"{name} {count:,} ({count / total:.0%})" for name, count in sorted(checks.items())
        )
        + " (fallback: Redis missed its budget and memory decided)."
    )
    if errors:
        report.add(
            "Redis errors by reason: "
            + ", ".join(f"{name} {count:,}" for name, count in sorted(errors.items()))
        )


def peer_starters(
    report: Report, peers: set[str], emulator: Process, workdir: Path, cpu: str | None
) -> list[Callable[[], Target]]:
    """A starter for each peer asked for that can run here; a report line for each that
    cannot."""
    starters: list[Callable[[], Target]] = []
    if "litellm" in peers:
        if litellm_available():
            starters.append(
                lambda: start_litellm(
                    emulator.url, emulator_token(emulator.url), ROUTE, MODEL, workdir, cpu
                )
            )
        else:
            report.add(f"\nLiteLLM: {SKIPPED}.")
    if "portkey" in peers:
        why_not = portkey_installed()
        if why_not is None:
            starters.append(
                lambda: start_portkey(
                    emulator.url, emulator_token(emulator.url), MODEL, workdir, cpu
                )
            )
        else:
            report.add(f"\nPortkey: {why_not}.")
    return starters


def run_all(args: argparse.Namespace, report: Report, layout: Layout, workdir: Path) -> int:
    seconds = 1.0 if args.smoke else args.seconds
    with ExitStack() as stack:
        emulator = start_emulator(workdir, layout.load_cpu)
        stack.callback(emulator.stop)
        targets = [direct_target(emulator)]
        for make in (
            lambda: passthrough_target(emulator, workdir, layout.server_cpu),
            lambda: gateway_target(XROUTER, emulator, workdir / "redis", layout.server_cpu),
            lambda: gateway_target(
                XROUTER_MEMORY, emulator, workdir / "memory", layout.server_cpu, limits="memory"
            ),
            *peer_starters(report, args.peers, emulator, workdir, layout.server_cpu),
        ):
            target = make()
            assert target.process is not None
            stack.callback(target.process.stop)
            targets.append(target)
        for target in targets:
            warm_up(
                target.url,
                [target.body(), target.body(True)] if target.streams else [target.body()],
                target.headers,
                layout.load_cpu,
            )
        failures = measure(report, targets, args.smoke, seconds, layout)
        limiter_line(report, targets[2])
        for target in targets[2:4]:
            assert target.process is not None
            answers = error_answers(target.process)
            if answers:
                report.add(
                    f"Answers other than 200 of '{target.name}' (access log): "
                    + ", ".join(f"{name} x{count:,}" for name, count in sorted(answers.items()))
                )
        report.add(
            "\nRSS after the run: "
            + ", ".join(
                f"{target.name} {target.process.rss_mb():.0f} MiB"
                for target in targets
                if target.process
            )
        )
        if args.workers > 1:
            gateway = targets[2]
            assert gateway.process is not None
            cpu_before = gateway.process.cpu_seconds()
            one_worker = wrk(
                gateway.url,
                gateway.body(),
                gateway.headers,
                4 if args.smoke else 64,
                seconds,
                layout.load_cpu,
            )
            cpu = gateway.process.cpu_seconds() - cpu_before
            one_worker.cpu_ms_per_request = cpu * 1000 / max(one_worker.requests, 1)
            failures += one_worker.failures
            failures += workers_row(
                report,
                emulator,
                workdir,
                args.workers,
                one_worker,
                gateway.process.rss_mb(),
                seconds,
                layout,
                args.smoke,
            )
    return failures


def run_soak(args: argparse.Namespace, report: Report, layout: Layout, workdir: Path) -> None:
    with ExitStack() as stack:
        emulator = start_emulator(workdir, layout.load_cpu)
        stack.callback(emulator.stop)
        target = gateway_target(XROUTER, emulator, workdir / "soak", layout.server_cpu)
        assert target.process is not None
        stack.callback(target.process.stop)
        samples = soak(
            target.process,
            target.url,
            target.body(),
            target.headers,
            args.soak,
            16,
            layout.load_cpu,
        )
        for line in report_lines(samples, args.soak):
            report.add(line)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="seconds; checks the harness only")
    parser.add_argument(
        "--seconds", type=float, default=12.0, help="each target's closed-loop time per scenario"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="workers of the scaling row (1: none)"
    )
    parser.add_argument(
        "--soak", type=float, default=0.0, help="run the memory soak instead, this many seconds"
    )
    parser.add_argument(
        "--peers", default="", help=f"comma-separated peers to compare: {', '.join(PEERS)}"
    )
    parser.add_argument("--output", type=Path, help="markdown file for the results")
    args = parser.parse_args()
    args.peers = {peer.strip() for peer in args.peers.split(",") if peer.strip()}
    unknown = args.peers - set(PEERS)
    if unknown:
        parser.error(f"unknown peers: {', '.join(sorted(unknown))} (known: {', '.join(PEERS)})")
    layout = Layout.detect()
    if layout.load_cpu is not None:
        # This script's own clients (time to first byte, open loop) are load generators too.
        os.sched_setaffinity(0, {int(layout.load_cpu)})
    report = Report()
    title = "memory soak" if args.soak else "benchmark"
    report.add(f"## XRouter {title}, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC\n")
    for line in machine_lines(layout):
        report.add(line)
    # The open loop past capacity holds thousands of connections at once.
    _, most_files = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (most_files, most_files))
    failures = 0
    with tempfile.TemporaryDirectory(prefix="xrouter-bench-") as directory:
        if args.soak:
            run_soak(args, report, layout, Path(directory))
        else:
            failures = run_all(args, report, layout, Path(directory))
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    report.add(
        f"\nLoad average at the end: {load} (the run itself keeps up to about 2 busy: more "
        "means other work shared the machine, and the figures are lower than on an idle one)."
    )
    default = RESULTS / f"{datetime.date.today()}{'-soak' if args.soak else ''}.md"
    output = args.output or (None if args.smoke else default)
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
