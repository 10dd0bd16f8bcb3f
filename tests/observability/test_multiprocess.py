"""``/metrics`` of ``xrouter serve --workers 2``: whichever worker answers, it counts both."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
from prometheus_client.mmap_dict import MmapedDict

from tests.gateway_processes import GatewayProcess, environment
from xrouter.observability.multiprocess import SAMPLE_SECONDS

REQUESTS = 40
MAX_REQUESTS = 2_000
REFUSED = re.compile(
    r'^xrouter_requests_total\{api="chat",model="",provider="",status="401"\} (\S+)$', re.M
)


def per_worker(shared: Path) -> dict[str, float]:
    """Refused chat requests counted in each worker's own file, by file."""
    counts = {}
    for path in shared.glob("counter_*.db"):
        values = MmapedDict(str(path), read_mode=True)
        try:
            for key, value, *_ in values.read_all_values():
                _, sample, labels, _ = json.loads(key)
                if sample == "xrouter_requests_total" and labels.get("status") == "401":
                    counts[path.name] = counts.get(path.name, 0.0) + value
        finally:
            values.close()
    return counts


def refused(url: str) -> float | None:
    """The refused chat requests ``/metrics`` at ``url`` reports."""
    match = REFUSED.search(httpx.get(f"{url}/metrics", headers={"Connection": "close"}).text)
    return float(match.group(1)) if match is not None else None


def test_two_workers_report_the_sum_of_both(tmp_path: Path) -> None:
    shared = tmp_path / "metrics"
    env = environment(
        XROUTER_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'xrouter.db'}",
        XROUTER_WORKERS="2",
        PROMETHEUS_MULTIPROC_DIR=str(shared),
        XROUTER_LOG_LEVEL="info",
    )
    server = GatewayProcess(tmp_path, env)
    try:
        sent = 0
        # A new connection each time, so the kernel spreads them over both workers; which
        # worker accepts is up to the kernel, so go on until both have answered some.
        while sent < REQUESTS or (len(per_worker(shared)) < 2 and sent < MAX_REQUESTS):
            response = httpx.post(
                f"{server.url}/v1/chat/completions",
                headers={"Authorization": "Bearer sk-wrong", "Connection": "close"},
                json={},
            )
            assert response.status_code == 401
            sent += 1
        # Each worker writes its counts to the shared files once a second (the answering one
        # also at once): within a few seconds every scrape sees the total.
        deadline = time.monotonic() + 5 * SAMPLE_SECONDS
        while refused(server.url) != sent and time.monotonic() < deadline:
            time.sleep(0.1)
        counts = set()
        for _ in range(10):
            text = httpx.get(f"{server.url}/metrics", headers={"Connection": "close"}).text
            match = REFUSED.search(text)
            assert match is not None, text[:2000]
            counts.add(float(match.group(1)))
            assert "\nxrouter_active_streams 0.0" in text
        assert counts == {sent}
        served = per_worker(shared)
        # Both workers answered some (the kernel spreads new connections over them), so no
        # single worker's own count could have been the total.
        assert len(served) == 2, served
        assert sum(served.values()) == sent
    finally:
        output = server.terminate()
    assert "Traceback" not in output, output
    # Every worker wrote the access lines it still held when it stopped.
    access = [line for line in output.splitlines() if '"logger":"xrouter.access"' in line]
    assert len([line for line in access if '"status":401' in line]) == sent
