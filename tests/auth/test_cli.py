"""``xrouter users`` and ``xrouter oauth-clients`` as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def xrouter(cwd: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("XROUTER_")}
    return subprocess.run(
        [sys.executable, "-m", "xrouter", *args],
        cwd=cwd,
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_users_create(tmp_path: Path) -> None:
    created = xrouter(
        tmp_path,
        "users", "create", "--email", "Admin@Example.com", "--admin", "--password-stdin", "--json",
        stdin="a long enough password\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    user = json.loads(created.stdout)
    assert user["email"] == "admin@example.com"
    assert user["is_admin"] is True
    assert user["id"].startswith("usr_")
    assert "a long enough password" not in created.stdout + created.stderr

    again = xrouter(
        tmp_path, "users", "create", "--email", "admin@example.com", "--password-stdin",
        stdin="another long password\n",
    )  # fmt: skip
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert "Traceback" not in again.stderr


def test_oauth_clients_create_and_list(tmp_path: Path) -> None:
    created = xrouter(
        tmp_path,
        "oauth-clients", "create", "--name", "Notebook", "--json",
        "--redirect-uri", "https://notebook.example/cb",
        "--redirect-uri", "http://127.0.0.1/cb",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    client = json.loads(created.stdout)
    assert client["client_id"].startswith("xrc_")
    assert client["redirect_uris"] == ["https://notebook.example/cb", "http://127.0.0.1/cb"]
    assert "client_secret" not in client

    confidential = xrouter(
        tmp_path,
        "oauth-clients", "create", "--name", "Resource server", "--confidential",
        "--redirect-uri", "https://rs.example/cb",
    )  # fmt: skip
    assert confidential.returncode == 0
    assert "client_secret: xrcs_" in confidential.stdout

    listed = xrouter(tmp_path, "oauth-clients", "list", "--json")
    names = [row["name"] for row in json.loads(listed.stdout)]
    assert names == ["Notebook", "Resource server"]


def test_users_create_without_a_terminal_explains_password_stdin(tmp_path: Path) -> None:
    created = xrouter(tmp_path, "users", "create", "--email", "ops@example.com")
    assert created.returncode == 1
    assert "--password-stdin" in created.stderr
    assert "Traceback" not in created.stderr
