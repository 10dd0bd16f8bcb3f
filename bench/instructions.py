"""Instructions the gateway executes per request, counted by valgrind's callgrind.

Wall-clock figures move with whatever else the machine runs; the number of instructions per
request barely does, so this is the measure to compare two versions of the hot path on a
shared machine (CPU time per request follows it closely). The gateway runs under callgrind
with every feature on, as in ``run.py``; counting is switched on only around a fixed number of
requests (after a warm-up), and includes the background work they cause (usage writes).

    python bench/instructions.py                        # json and stream, a minute or two
    python bench/instructions.py --src /path/to/src     # another checkout's package instead

Needs valgrind (``apt-get install valgrind``). Only ratios between runs mean anything:
callgrind runs the program about fifty times slower than it really runs.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))

from processes import cores, free_port, python_module, start
from targets import (
    CHAT,
    ROUTE,
    Target,
    bearer,
    create_key,
    gateway_environment,
    start_emulator,
)


async def send(target: Target, stream: bool, count: int, concurrency: int = 8) -> None:
    """``count`` requests, ``concurrency`` at a time; each must succeed."""
    headers = {**target.headers, "Content-Type": "application/json"}
    body = target.body(stream)
    slots = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:

        async def one() -> None:
            async with slots, session.post(target.url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"the gateway answered {response.status}")

        await asyncio.gather(*(one() for _ in range(count)))


def control(pid: int, *arguments: str) -> None:
    subprocess.run(["callgrind_control", *arguments, str(pid)], capture_output=True, check=True)


def newest_dump(output: Path, before: set[Path]) -> Path:
    return sorted(set(output.parent.glob(output.name + "*")) - before)[-1]


def counted(dump: Path) -> int:
    """Instructions in a callgrind dump (its last ``totals:`` line)."""
    totals = [
        int(line.split()[1]) for line in dump.read_text().splitlines() if line.startswith("totals:")
    ]
    if not totals:
        raise RuntimeError(f"no totals in {dump}")
    return totals[-1]


def top_functions(dump: Path, count: int) -> str:
    """The ``count`` C functions with the most instructions of their own (the interpreter's
    loop, the allocator, the collector, msgspec, the HTTP parser, system calls...)."""
    report = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", str(dump)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [line for line in report.splitlines() if re.match(r"^\s*[\d,]+ \(", line)]
    return "\n".join(rows[1 : count + 1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=600, help="counted requests per kind")
    parser.add_argument("--limits", choices=["redis", "memory"], default="redis")
    parser.add_argument("--src", type=Path, help="import xrouter from this directory")
    parser.add_argument("--top", type=int, default=0, help="also list the top C functions")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xrouter-instructions-") as directory:
        workdir = Path(directory)
        emulator = start_emulator(workdir, None)
        environment = gateway_environment(emulator.url, workdir, args.limits)
        # Under callgrind everything is slow: no Redis call may time out into the fallback.
        environment["XROUTER_RATE_LIMIT_REDIS_TIMEOUT_MS"] = "60000"
        if args.src is not None:
            environment["PYTHONPATH"] = str(args.src.resolve())
        output = workdir / "callgrind.out"
        port = free_port()
        command = [
            *("valgrind", "--tool=callgrind", "--instr-atstart=no"),
            f"--callgrind-out-file={output}",
            *python_module("-m", "xrouter", "serve", "--port", str(port)),
        ]
        gateway = start(
            "gateway",
            command,
            cpu="0" if cores() >= 2 else None,
            port=port,
            ready_path="/health",
            env=environment,
            cwd=workdir,
            log=workdir / "gateway.log",
            # Under callgrind, starting takes fifty times as long; longer on a busy machine.
            ready_within=600,
        )
        try:
            key = create_key(environment, workdir, gateway.url)
            target = Target("xrouter", gateway, f"{gateway.url}{CHAT}", bearer(key), ROUTE)
            asyncio.run(send(target, False, 200))
            asyncio.run(send(target, True, 100))
            pid = gateway.popen.pid
            for kind, stream in (("json", False), ("stream", True)):
                control(pid, "-z")
                control(pid, "-i", "on")
                asyncio.run(send(target, stream, args.requests))
                time.sleep(1.5)  # the usage flush of these requests
                control(pid, "-i", "off")
                before = set(workdir.glob(output.name + "*"))
                control(pid, "-d")
                time.sleep(0.5)
                dump = newest_dump(output, before)
                per_request = counted(dump) / args.requests
                print(f"{kind}: {per_request / 1e6:.3f} M instructions per request", flush=True)
                if args.top:
                    print(top_functions(dump, args.top), flush=True)
        finally:
            gateway.stop()
            emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
