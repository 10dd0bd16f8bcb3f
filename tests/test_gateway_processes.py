"""A gateway started as a process is checked for leaked secrets like an in-process one."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.gateway_processes import GatewayProcess, environment
from tests.log_secrets import WATCHER


def test_output_and_secret_settings_reach_the_secrets_check(tmp_path: Path) -> None:
    credential = "probe-yandex-api-key-0123456789"
    env = environment(
        XROUTER_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'xrouter.db'}",
        XROUTER_YANDEX_API_KEY=credential,
        XROUTER_YANDEX_FOLDER_ID="b1gprobefolder",
        XROUTER_LOG_LEVEL="info",
    )
    assert credential in WATCHER.secrets

    gateway = GatewayProcess(tmp_path, env)
    output = gateway.kill()

    assert gateway.process.returncode == -signal.SIGKILL
    assert "Application startup complete" in output
    startup = next(line for line in output.splitlines() if "Application startup complete" in line)
    assert startup in WATCHER.lines
    assert gateway.terminate() == output  # stopping twice keeps the output once
    assert WATCHER.lines.count(startup) == 1
