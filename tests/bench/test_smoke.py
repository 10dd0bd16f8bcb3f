"""The benchmark harness runs end to end (its numbers are not asserted: CI never times)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "bench" / "run.py"


@pytest.fixture
def wrk() -> None:
    if shutil.which("wrk") is None:
        if os.environ.get("XROUTER_REQUIRE_SERVICES") == "1":
            pytest.fail("wrk is not installed (apt-get install wrk)")
        pytest.skip("wrk is not installed")


def run_bench(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, str(BENCH), *args],
        env={**os.environ, "BENCH_REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.usefixtures("wrk")
def test_bench_smoke_writes_every_table(tmp_path: Path, redis_url: str) -> None:
    output = tmp_path / "results.md"
    result = run_bench(redis_url, "--smoke", "--peers", "litellm", "--output", str(output))
    table = output.read_text()
    assert table.strip() in result.stdout  # the file holds what was printed
    for heading in (
        "Closed loop, json",
        "Closed loop, stream",
        "first content byte",
        "Open loop",
        "Workers: closed loop",
    ):
        assert heading in table
    assert "Layout: server under test" in table or "no pinning" in table
    rows = [line for line in table.splitlines() if line.startswith("| xrouter ")]
    assert len(rows) >= 5
    memory_rows = [line for line in table.splitlines() if line.startswith("| xrouter, limits in")]
    assert len(memory_rows) >= 4
    assert "| xrouter, 2 workers |" in table
    assert "Rate-limit checks of 'xrouter' by deciding backend:" in table
    if importlib.util.find_spec("litellm") is None:
        # Not installed: the peer is skipped with a line that says how to add it.
        assert "skipped: install .[bench-peers]" in table
    else:
        assert "| litellm |" in table


@pytest.mark.usefixtures("wrk")
def test_bench_soak_reports_rss_samples_slope_and_usage_lag(tmp_path: Path, redis_url: str) -> None:
    output = tmp_path / "soak.md"
    run_bench(redis_url, "--soak", "3", "--output", str(output))
    table = output.read_text()
    assert "Memory soak, 3 s" in table
    samples = [line for line in table.splitlines() if line.startswith("| ") and "|---" not in line]
    assert len(samples) >= 4  # the header row and at least three samples
    assert "RSS slope:" in table
    assert "MiB/min" in table
    assert "RSS after 100k requests: not reached" in table
    assert "Usage writer lag (oldest record not yet written): at most" in table
