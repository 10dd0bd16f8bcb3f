"""A private ``redis-server`` on a free loopback port, for tests that stop and restart Redis
(the shared test Redis must never be stopped), and a private Redis Cluster of such servers."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis
import redis.exceptions

from tests.gateway_processes import free_port


def _installed(program: str) -> str:
    """The path of ``program``; the test is skipped without it (failed where services are
    required)."""
    binary = shutil.which(program)
    if binary is None:
        message = f"{program} is not installed"
        if os.environ.get("XROUTER_REQUIRE_SERVICES") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return binary


class PrivateRedis:
    """One ``redis-server`` process without persistence: a restart starts empty."""

    def __init__(self, directory: Path) -> None:
        self._binary = _installed("redis-server")
        self._directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, *options: str) -> None:
        """Start the server (``options`` are more ``redis-server`` arguments) and wait until
        it answers."""
        self._process = subprocess.Popen(
            [
                self._binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self._directory),
                *options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.exceptions.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(10)
            self._process = None


class PrivateRedisCluster:
    """A Redis Cluster of ``size`` primaries (no replicas) on free loopback ports, without
    persistence; ``url`` names every node, as a deployment would. ``options`` are more
    ``redis-server`` arguments for every node."""

    def __init__(self, directory: Path, size: int = 3, options: tuple[str, ...] = ()) -> None:
        self._cli = _installed("redis-cli")
        self._options = options
        self._directories = [directory / f"node-{index}" for index in range(size)]
        for path in self._directories:
            path.mkdir(parents=True, exist_ok=True)
        self.nodes = [PrivateRedis(path) for path in self._directories]
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> None:
        try:
            for node, path in zip(self.nodes, self._directories, strict=True):
                # The bus port is chosen too: the default (port + 10000) may be taken or
                # beyond 65535.
                node.start(
                    "--cluster-enabled", "yes",
                    "--cluster-port", str(free_port()),
                    "--cluster-config-file", str(path / "nodes.conf"),
                    "--cluster-node-timeout", "2000",
                    *self._options,
                )  # fmt: skip
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            subprocess.run(
                [self._cli, "--cluster", "create", *addresses, "--cluster-replicas", "0",
                 "--cluster-yes"],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=30,
            )  # fmt: skip
            self._wait_until_ok()
        except BaseException:
            self.stop()
            raise

    def _wait_until_ok(self) -> None:
        """Until every node sees every slot served (the nodes learn of each other by gossip)."""
        deadline = time.monotonic() + 30
        for node in self.nodes:
            client = redis.Redis(port=node.port, socket_timeout=1, socket_connect_timeout=1)
            try:
                while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"node {node.port} never saw the cluster ready")
                    time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
