"""The benchmark harness runs end to end (its numbers are not asserted: CI never times)."""

from __future__ import annotations

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


@pytest.mark.usefixtures("wrk")
def test_bench_smoke(tmp_path: Path) -> None:
    output = tmp_path / "results.md"
    result = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    table = output.read_text()
    for heading in ("Closed loop, json", "Closed loop, stream", "first content byte", "Open loop"):
        assert heading in table
    rows = [line for line in table.splitlines() if line.startswith("| xrouter ")]
    assert len(rows) >= 5
