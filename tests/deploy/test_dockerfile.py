"""The Dockerfile, checked without a container engine: hadolint finds nothing, the image runs
as an unprivileged user with a health check, bakes in no secret, and its build context (after
.dockerignore) is exactly what the build copies and enough to install the package."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import dockerfile
import pytest

from tests.deploy.chart import DEPLOY, ROOT

DOCKERFILE = DEPLOY / "Dockerfile"


@pytest.fixture(scope="module")
def stages() -> list[list[dockerfile.Command]]:
    """The Dockerfile's commands, one list per build stage."""
    result: list[list[dockerfile.Command]] = []
    for command in dockerfile.parse_file(str(DOCKERFILE)):
        if command.cmd == "FROM":
            result.append([])
        if result:
            result[-1].append(command)
    return result


def commands(stage: list[dockerfile.Command], name: str) -> list[dockerfile.Command]:
    return [command for command in stage if command.cmd == name]


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_on_slim_python_311(stages: list[list[dockerfile.Command]]) -> None:
    assert len(stages) == 2
    [base] = [c for c in dockerfile.parse_file(str(DOCKERFILE)) if c.cmd == "ARG"]
    assert base.value[0].startswith("PYTHON_IMAGE=python:3.11-slim")
    final = stages[-1]
    for copy in commands(final, "COPY"):
        # The runtime image takes only the built virtualenv from the build stage.
        assert copy.flags == ("--from=build",)


def test_runs_unprivileged_with_a_health_check(stages: list[list[dockerfile.Command]]) -> None:
    final = stages[-1]
    [user] = commands(final, "USER")
    assert user.value[0].split(":")[0] not in {"root", "0"}
    [healthcheck] = commands(final, "HEALTHCHECK")
    assert healthcheck.value[0] == "CMD"
    assert "/health" in " ".join(healthcheck.value)
    [entrypoint] = commands(final, "ENTRYPOINT")
    assert entrypoint.value == ("xrouter",)
    [command] = commands(final, "CMD")
    assert command.value == ("serve",)
    environment = " ".join(" ".join(c.value) for c in commands(final, "ENV"))
    assert "XROUTER_HOST" in environment  # listens beyond the container's loopback
    [expose] = commands(final, "EXPOSE")
    assert expose.value == ("8080",)


def test_bakes_in_no_secret() -> None:
    for command in dockerfile.parse_file(str(DOCKERFILE)):
        if command.cmd in {"ENV", "ARG", "LABEL"}:
            text = " ".join(command.value).upper()
            for word in ("PEPPER", "PASSWORD", "CREDENTIALS", "API_KEY", "TOKEN", "DATABASE_URL"):
                assert word not in text, command.original


def context_entries() -> list[str]:
    """What .dockerignore lets into the build context: it excludes all, then re-includes."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"
    return [pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")]


def test_build_copies_exactly_the_context(stages: list[list[dockerfile.Command]]) -> None:
    copied = [
        source.rstrip("/")
        for copy in commands(stages[0], "COPY")
        for source in copy.value[:-1]
        if not source.startswith("--")
    ]
    assert sorted(copied) == sorted(context_entries())


def test_the_context_is_enough_to_build_the_package(tmp_path: Path) -> None:
    context = tmp_path / "context"
    context.mkdir()
    for entry in context_entries():
        source = ROOT / entry
        if source.is_dir():
            ignored = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
            shutil.copytree(source, context / entry, ignore=ignored)
        else:
            (context / entry).write_bytes(source.read_bytes())
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"),
            *("--wheel-dir", str(tmp_path / "dist"), str(context)),
        ],
        check=True,
        timeout=300,
    )
    [wheel] = (tmp_path / "dist").glob("xrouter-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    # What `xrouter db upgrade` and the web UI need at run time, beyond Python modules.
    assert "xrouter/storage/migrations/env.py" in names
    assert "xrouter/storage/migrations/script.py.mako" in names
    migrations = ROOT / "src" / "xrouter" / "storage" / "migrations" / "versions"
    for revision in migrations.glob("*.py"):
        assert f"xrouter/storage/migrations/versions/{revision.name}" in names
    assert any(name.startswith("xrouter/ui/templates/") for name in names)
    assert any(name.startswith("xrouter/ui/static/") for name in names)
