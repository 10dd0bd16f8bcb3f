"""Start the processes a benchmark measures, each pinned to a core, and read their CPU and RSS."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cores() -> int:
    return len(os.sched_getaffinity(0))


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    url: str
    log: Path | None = None

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and its children (workers)."""
        total = 0.0
        for pid in [self.popen.pid, *_children(self.popen.pid)]:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        return total

    def rss_mb(self) -> float:
        """Resident memory of the process and its children, in MiB."""
        return sum(self.rss_each_mb())

    def rss_each_mb(self) -> list[float]:
        """Resident memory of the process, then of each child (workers), in MiB."""
        return [
            int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE / 2**20
            for pid in [self.popen.pid, *_children(self.popen.pid)]
        ]

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def _children(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(child) for child in children]


def start(
    name: str,
    command: Sequence[str],
    *,
    cpu: str | None,
    port: int,
    ready_path: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    log: Path | None = None,
    ready_within: float = 60,
) -> Process:
    """Run ``command`` (under ``taskset -c cpu``) and wait until ``ready_path`` answers."""
    prefix = ["taskset", "-c", cpu] if cpu is not None else []
    output = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    popen = subprocess.Popen(
        [*prefix, *command],
        env={**os.environ, **(env or {})},
        cwd=cwd,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_within
    while True:
        try:
            httpx.request(
                "GET" if ready_path != "/v1/chat/completions" else "POST", url + ready_path
            )
            return Process(name, popen, url, log)
        except httpx.TransportError:
            pass
        if popen.poll() is not None or time.monotonic() > deadline:
            popen.kill()
            raise RuntimeError(f"{name} did not start; see {log}")
        time.sleep(0.1)


def python_module(*args: str) -> list[str]:
    return [sys.executable, *args]
