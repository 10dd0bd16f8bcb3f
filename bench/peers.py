"""Other gateways run against the same emulator with the same load, for a side-by-side table.

LiteLLM's proxy (``pip install -e '.[bench-peers]'``) is the one peer: it is told the
emulator's GigaChat face is an OpenAI-compatible upstream (same request and answer shapes)
and given the emulator's access token as its API key. It runs as one worker, pinned like the
gateway. ``BENCH_LITELLM_PYTHON`` names another interpreter to run it with (a separate
virtual environment keeps its many pins away from the project's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from processes import free_port, start
from targets import CHAT, Target

SKIPPED = "skipped: install .[bench-peers] (LiteLLM proxy) to compare with LiteLLM"
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
    return Target("litellm", process, f"{process.url}{CHAT}", f"Bearer {MASTER_KEY}", route)
