"""Real ``python -m xrouter serve`` processes for tests that need a process boundary:
revocation across instances, usage durability across SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from xrouter.settings import Settings

PEPPER = "processes-test-pepper-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(**settings: str) -> dict[str, str]:
    """This environment without any XROUTER_ setting, plus ``settings``."""
    values = {k: v for k, v in os.environ.items() if not k.startswith("XROUTER_")}
    values.update({"XROUTER_KEY_PEPPER": PEPPER, "XROUTER_LOG_LEVEL": "warning"})
    if "shutdown_drain_seconds" in Settings.model_fields:
        # No load balancer to wait for: stop at once on SIGTERM.
        values["XROUTER_SHUTDOWN_DRAIN_SECONDS"] = "0"
    values.update(settings)
    return values


class ServeProcess:
    """One ``xrouter serve`` on a free port, ready when constructed."""

    def __init__(self, cwd: Path, env: dict[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "xrouter", "serve", "--port", str(self.port)],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/ready", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                output = self.process.stdout.read() if self.process.stdout else ""
                raise AssertionError(f"serve did not become ready:\n{output}")
            time.sleep(0.1)

    def terminate(self, timeout: float = 60) -> str:
        """SIGTERM, then wait for a clean exit; the process's output."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            output, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        return output or ""
