"""Other gateways run against the same emulator with the same load, for a side-by-side table.

Each is told the emulator's GigaChat face is an OpenAI-compatible upstream (same request and
answer shapes) and given the emulator's access token as its API key, and runs as one process
pinned like the gateway.

- LiteLLM's proxy (``pip install -e '.[bench-peers]'``). ``BENCH_LITELLM_PYTHON`` names
  another interpreter to run it with (a separate virtual environment keeps its many pins away
  from the project's).
- Portkey's gateway (Node.js), installed with npm into ``bench/.peers`` on first use. Its
  clients name the upstream in headers of their own (``x-portkey-provider``,
  ``x-portkey-custom-host``). Its streamed answers fail on Node 20 (``TypeError: immutable``
  when it adds its headers to the upstream's response), so it takes the non-streamed load
  only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from processes import free_port, start
from targets import CHAT, Target, bearer

SKIPPED = "skipped: install .[bench-peers] (LiteLLM proxy) to compare with LiteLLM"
PORTKEY_VERSION = "1.15.2"
PORTKEY_DIR = Path(__file__).with_name(".peers") / f"portkey-{PORTKEY_VERSION}"
PORTKEY_SERVER = PORTKEY_DIR / "node_modules/@portkey-ai/gateway/build/start-server.js"
# LiteLLM refuses to start without a master key; clients present it, as ours present a key.
MASTER_KEY = "sk-xrouter-bench-not-secret-0123456789abcdef"


def litellm_python() -> str:
    return os.environ.get("BENCH_LITELLM_PYTHON", sys.executable)


def litellm_available() -> bool:
    """True when the interpreter that would run it can import LiteLLM's proxy."""
    probe = subprocess.run(
        [litellm_python(), "-c", "import litellm.proxy.proxy_cli"],
        capture_output=True,
        check=False,
        timeout=120,
    )
    return probe.returncode == 0


def start_litellm(
    emulator_url: str, token: str, route: str, upstream_model: str, workdir: Path, cpu: str | None
) -> Target:
    """LiteLLM's proxy serving ``route`` from the emulator, ready to take load."""
    config = workdir / "litellm.yaml"
    # JSON is YAML: no YAML writer needed.
    config.write_text(
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": route,
                        "litellm_params": {
                            "model": f"openai/{upstream_model}",
                            "api_base": f"{emulator_url}/api/v1",
                            "api_key": token,
                        },
                    }
                ],
                "litellm_settings": {"drop_params": True, "telemetry": False},
                "general_settings": {"master_key": MASTER_KEY},
            }
        )
    )
    port = free_port()
    command = [
        litellm_python(),
        *("-m", "litellm.proxy.proxy_cli"),
        *("--config", str(config), "--port", str(port), "--host", "127.0.0.1"),
        *("--num_workers", "1"),
    ]
    process = start(
        "litellm",
        command,
        cpu=cpu,
        port=port,
        ready_path="/health/liveliness",
        env={"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "DISABLE_SCHEMA_UPDATE": "1"},
        cwd=workdir,
        log=workdir / "litellm.log",
    )
    return Target("litellm", process, f"{process.url}{CHAT}", bearer(MASTER_KEY), route)


def portkey_installed() -> str | None:
    """None once Portkey's gateway is ready to run (installed now if need be), else why not."""
    if shutil.which("node") is None:
        return "skipped: Node.js (node, npm) is needed to run Portkey's gateway"
    if PORTKEY_SERVER.exists():
        return None
    if shutil.which("npm") is None:
        return "skipped: npm is needed to install Portkey's gateway"
    PORTKEY_DIR.mkdir(parents=True, exist_ok=True)
    installed = subprocess.run(
        [
            *("npm", "install", "--prefix", str(PORTKEY_DIR), "--no-audit", "--no-fund"),
            f"@portkey-ai/gateway@{PORTKEY_VERSION}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if installed.returncode != 0 or not PORTKEY_SERVER.exists():
        return f"skipped: npm could not install it: {installed.stderr.strip()[-300:]}"
    return None


def start_portkey(
    emulator_url: str, token: str, upstream_model: str, workdir: Path, cpu: str | None
) -> Target:
    """Portkey's gateway in front of the emulator, ready to take load."""
    port = free_port()
    process = start(
        "portkey",
        ["node", str(PORTKEY_SERVER), f"--port={port}", "--headless"],
        cpu=cpu,
        port=port,
        ready_path="/",
        # It refuses upstreams on private addresses unless they are trusted.
        env={"NODE_ENV": "production", "TRUSTED_CUSTOM_HOSTS": "127.0.0.1,localhost"},
        cwd=workdir,
        log=workdir / "portkey.log",
    )
    headers = {
        **bearer(token),
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": f"{emulator_url}/api/v1",
    }
    return Target(
        "portkey", process, f"{process.url}{CHAT}", headers, upstream_model, streams=False
    )
