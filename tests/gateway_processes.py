"""Real ``python -m xrouter serve`` processes, for tests that need a process boundary: several
instances sharing PostgreSQL and Redis, SIGTERM drains, SIGKILL mid-load, the CLI as a newcomer
runs it.

Each process writes its output to a file. When the process stops, that output joins the log
records the secrets check reads (tests/log_secrets.py), and the secret settings it was started
with are registered, so a process that logs a pepper or a provider credential fails the run just
like an in-process one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.log_secrets import keep_output, register_secret
from xrouter.emulators.server import (
    GIGACHAT_EMULATOR_CREDENTIALS,
    YANDEX_EMULATOR_API_KEY,
    YANDEX_EMULATOR_FOLDER_ID,
)
from xrouter.keys.hashing import KeyHasher
from xrouter.keys.service import CreatedKey, KeyService
from xrouter.settings import Settings
from xrouter.storage.database import create_engine, session_factory
from xrouter.storage.migrate import upgrade_async

XROUTER = [sys.executable, "-m", "xrouter"]
PEPPER = "processes-test-pepper-0123456789"
READY_SECONDS = 60.0


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_environment(**settings: str) -> dict[str, str]:
    """This process's environment without any ``XROUTER_`` variable, plus ``settings``."""
    values = {k: v for k, v in os.environ.items() if not k.startswith("XROUTER_")}
    values.update(settings)
    _register_secret_settings(values)
    return values


def environment(**settings: str) -> dict[str, str]:
    """A clean environment with the shared pepper, quiet logs and no drain, plus ``settings``.

    Instances that share a database must share the pepper; without a load balancer to wait
    for, a SIGTERM stops at once.
    """
    defaults = {
        "XROUTER_KEY_PEPPER": PEPPER,
        "XROUTER_LOG_LEVEL": "warning",
        "XROUTER_SHUTDOWN_DRAIN_SECONDS": "0",
    }
    return clean_environment(**{**defaults, **settings})


async def reset_schema(url: str) -> None:
    """Empty the PostgreSQL database at ``url``: drop its public schema, tables and all."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


async def fresh_database(url: str) -> None:
    """Empty the PostgreSQL database at ``url`` (its public schema) and migrate it."""
    await reset_schema(url)
    await upgrade_async(url)


async def create_key(database_url: str, name: str, **options: Any) -> CreatedKey:
    """A key written straight to the migrated database at ``database_url``, hashed with the
    shared pepper, as the instances started here see it; ``options`` as for
    ``KeyService.create``."""
    engine = create_engine(database_url)
    try:
        service = KeyService(session_factory(engine), KeyHasher(PEPPER.encode()))
        return await service.create(name, **options)
    finally:
        await engine.dispose()


def emulator_settings(gigachat_url: str, yandex_url: str) -> dict[str, str]:
    """Settings that configure both providers as real ones, at the emulators' addresses."""
    return {
        "XROUTER_EMULATE_MISSING_PROVIDERS": "false",
        "XROUTER_GIGACHAT_CREDENTIALS": GIGACHAT_EMULATOR_CREDENTIALS,
        "XROUTER_GIGACHAT_BASE_URL": f"{gigachat_url}/api/v1",
        "XROUTER_GIGACHAT_AUTH_URL": f"{gigachat_url}/api/v2/oauth",
        "XROUTER_YANDEX_API_KEY": YANDEX_EMULATOR_API_KEY,
        "XROUTER_YANDEX_FOLDER_ID": YANDEX_EMULATOR_FOLDER_ID,
        "XROUTER_YANDEX_BASE_URL": yandex_url,
    }


def _register_secret_settings(values: Mapping[str, str]) -> None:
    for name, field in Settings.model_fields.items():
        if field.annotation in (SecretStr, SecretStr | None):
            register_secret(values.get(f"XROUTER_{name.upper()}"))


class GatewayProcess:
    """One ``xrouter serve`` on a free port (or ``port``), serving when constructed.

    ``ready_path`` is polled until it answers 200 (unless ``wait`` is false: then call
    ``wait_ready``); the output goes to ``log`` (by default a file named after the port in
    ``cwd``).
    """

    def __init__(
        self,
        cwd: Path,
        env: Mapping[str, str],
        *,
        port: int | None = None,
        args: Sequence[str] = (),
        ready_path: str = "/ready",
        log: Path | None = None,
        wait: bool = True,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log or cwd / f"xrouter-serve-{self.port}.log"
        self._kept = False
        self._ready_path = ready_path
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [*XROUTER, "serve", "--port", str(self.port), *args],
                cwd=cwd,
                env=dict(env),
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Poll the ready path until it answers 200; kill the process if it never does."""
        deadline = time.monotonic() + READY_SECONDS
        while True:
            try:
                if httpx.get(f"{self.url}{self._ready_path}", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"serve did not become ready:\n{self.kill()}")
            time.sleep(0.1)

    def output(self) -> str:
        """Everything the process has written so far."""
        return self.log.read_text(errors="replace")

    def terminate(self, timeout: float = 30) -> str:
        """SIGTERM, then wait for the exit (SIGKILL after ``timeout``); the process's output."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self._finished()

    def kill(self) -> str:
        """SIGKILL: no drain, no flush; the process's output."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        return self._finished()

    def _finished(self) -> str:
        output = self.output()
        if not self._kept:
            self._kept = True
            keep_output(output)
        return output


def start_all(
    count: int, cwd: Path, env: Mapping[str, str], *, ready_path: str = "/ready"
) -> list[GatewayProcess]:
    """``count`` processes with the same settings, started together and all ready."""
    processes: list[GatewayProcess] = []
    try:
        for _ in range(count):
            processes.append(GatewayProcess(cwd, env, ready_path=ready_path, wait=False))
        for gateway in processes:
            gateway.wait_ready()
    except BaseException:
        for gateway in processes:
            gateway.kill()
        raise
    return processes


def stop_all(processes: Sequence[GatewayProcess]) -> None:
    """SIGTERM every process first, then wait for each: they drain in parallel."""
    for gateway in processes:
        if gateway.process.poll() is None:
            gateway.process.send_signal(signal.SIGTERM)
    for gateway in processes:
        gateway.terminate()
