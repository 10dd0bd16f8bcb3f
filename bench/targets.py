"""What a benchmark points its load at: the emulator (the direct baseline), the bare
passthrough proxy and the gateway with every feature on, each started and ready for load."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from processes import Process, free_port, python_module, start

from xrouter.emulators.server import GIGACHAT_EMULATOR_CREDENTIALS
from xrouter.logs import FLUSH_SECONDS

MODEL = "GigaChat-2-Max"
MESSAGES = [{"role": "user", "content": "Привет! Сколько будет дважды два?"}]
CHAT = "/v1/chat/completions"
# Limits set high enough never to refuse: every request pays for the full check and settle.
HIGH_LIMIT = 2_000_000_000
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
# A shared machine can hold Redis's answer past the production budget of 5 ms; then the
# limiter falls back to memory and the run would not measure Redis. The table reports which
# backend decided, so a fallback is visible either way.
REDIS_TIMEOUT_MS = 50
# Clients ask for a route alias, so the routing table is on the path too.
ROUTE = "bench-chat"
_CHECKS = re.compile(r'^xrouter_ratelimit_checks_total\{backend="(\w+)",[^}]*\} ([0-9.e+]+)$', re.M)
_REDIS_ERRORS = re.compile(
    r'^xrouter_ratelimit_redis_errors_total\{reason="(\w+)"\} ([0-9.e+]+)$', re.M
)


@dataclass
class Target:
    name: str
    process: Process | None
    url: str
    # The request's headers but Content-Type: its credentials, and what a peer needs besides.
    headers: dict[str, str]
    model: str
    # False: it cannot relay streamed answers, and takes only the non-streamed load.
    streams: bool = True

    def body(self, stream: bool = False) -> bytes:
        return json.dumps(
            {"model": self.model, "messages": MESSAGES, "stream": stream}, ensure_ascii=False
        ).encode()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def start_emulator(workdir: Path, cpu: str | None) -> Process:
    port = free_port()
    return start(
        "emulator",
        python_module("-m", "xrouter", "emulate", "gigachat", "--port", str(port)),
        cpu=cpu,
        port=port,
        ready_path="/api/v1/models",
        log=workdir / "emulator.log",
    )


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


def direct_target(emulator: Process) -> Target:
    token = emulator_token(emulator.url)
    return Target("direct (emulator)", None, f"{emulator.url}/api{CHAT}", bearer(token), MODEL)


def passthrough_target(emulator: Process, workdir: Path, cpu: str | None) -> Target:
    token = emulator_token(emulator.url)
    port = free_port()
    process = start(
        "passthrough",
        python_module(
            str(Path(__file__).with_name("passthrough.py")),
            *("--port", str(port), "--upstream", f"{emulator.url}/api{CHAT}"),
            *("--authorization", f"Bearer {token}"),
        ),
        cpu=cpu,
        port=port,
        ready_path="/",
        log=workdir / "passthrough.log",
    )
    return Target("bare aiohttp passthrough", process, f"{process.url}{CHAT}", {}, MODEL)


def gateway_environment(
    emulator_url: str, workdir: Path, limits: str = "redis", workers: int = 1
) -> dict[str, str]:
    """Every feature a deployment runs with: key auth, rate limits (in Redis or in memory),
    usage recording, metrics, a route, and the access log (info level, to the log file)."""
    environment = {
        "XROUTER_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/bench.db",
        "XROUTER_KEY_PEPPER": "bench-pepper-not-secret",
        "XROUTER_LOG_LEVEL": "info",
        "XROUTER_WORKERS": str(workers),
        "XROUTER_EMULATE_MISSING_PROVIDERS": "false",
        "XROUTER_GIGACHAT_CREDENTIALS": GIGACHAT_EMULATOR_CREDENTIALS,
        "XROUTER_GIGACHAT_BASE_URL": f"{emulator_url}/api/v1",
        "XROUTER_GIGACHAT_AUTH_URL": f"{emulator_url}/api/v2/oauth",
        "XROUTER_ROUTES": json.dumps({ROUTE: {"targets": [f"gigachat/{MODEL}"]}}),
        "XROUTER_RATE_LIMIT_BACKEND": limits,
        "XROUTER_RATE_LIMIT_KEY_RPM": str(HIGH_LIMIT),
        "XROUTER_RATE_LIMIT_KEY_TPM": str(HIGH_LIMIT),
        "XROUTER_RATE_LIMIT_KEY_TPD": str(HIGH_LIMIT),
        "XROUTER_RATE_LIMIT_PROVIDERS": json.dumps({"gigachat": {"rpm": HIGH_LIMIT}}),
    }
    if limits == "redis":
        environment["XROUTER_REDIS_URL"] = REDIS_URL
        environment["XROUTER_RATE_LIMIT_REDIS_TIMEOUT_MS"] = str(REDIS_TIMEOUT_MS)
    return environment


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


def gateway_target(
    name: str,
    emulator: Process,
    workdir: Path,
    cpu: str | None,
    *,
    limits: str = "redis",
    workers: int = 1,
) -> Target:
    """``xrouter serve`` with every feature on, in its own directory, with its own key."""
    workdir.mkdir(parents=True, exist_ok=True)
    environment = gateway_environment(emulator.url, workdir, limits, workers)
    port = free_port()
    process = start(
        name,
        python_module("-m", "xrouter", "serve", "--port", str(port)),
        cpu=cpu,
        port=port,
        ready_path="/health",
        env=environment,
        cwd=workdir,
        log=workdir / "gateway.log",
    )
    try:
        key = create_key(environment, workdir, process.url)
    except BaseException:
        process.stop()
        raise
    return Target(name, process, f"{process.url}{CHAT}", bearer(key), ROUTE)


def limit_checks(gateway_url: str) -> tuple[dict[str, int], dict[str, int]]:
    """Rate-limit checks so far by the backend that decided (redis, fallback, memory), and
    the limiter's Redis errors by reason."""
    text = httpx.get(f"{gateway_url}/metrics", timeout=10).text
    return _sums(_CHECKS.findall(text)), _sums(_REDIS_ERRORS.findall(text))


def error_answers(process: Process) -> dict[str, int]:
    """The gateway's chat answers other than 200, from its access log: ``"504
    upstream_timeout"`` -> count (499: the client left, as wrk does with the requests in flight
    when it stops). The polls of ``/v1/models`` that wait for a new key to be served are not
    load, and not counted."""
    # The access log is written in batches within 0.1 s: let the last one out.
    time.sleep(FLUSH_SECONDS + 0.2)
    counts: dict[str, int] = {}
    if process.log is None or not process.log.exists():
        return counts
    with process.log.open("rb") as lines:
        for line in lines:
            if b'"xrouter.access"' not in line or b'"status":200,' in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("api") != "chat":
                continue
            name = f"{entry.get('status')} {entry.get('error_code') or ''}".strip()
            counts[name] = counts.get(name, 0) + 1
    return counts


def _sums(pairs: list[tuple[str, str]]) -> dict[str, int]:
    sums: dict[str, int] = {}
    for name, value in pairs:
        sums[name] = sums.get(name, 0) + int(float(value))
    return sums
