"""Secrets never reach the logs: every log record of the test session is kept, and when the
session ends each secret the tests used is looked for in them; a match fails the run.

Secrets are registered where they come into being, not listed by hand: every ``Settings``
registers its secret fields (peppers, provider credentials, passwords), every pepper a
``KeyHasher`` is made with, every created or rotated API key (``CreatedKey``), every OAuth
client secret (``CreatedClient``), every password hashed or checked, and the emulators'
credentials. Tests may add their own with ``register_secret``.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr

from xrouter.auth.clients import CreatedClient
from xrouter.auth.passwords import Passwords
from xrouter.emulators.server import GIGACHAT_EMULATOR_CREDENTIALS, YANDEX_EMULATOR_API_KEY
from xrouter.keys.hashing import KeyHasher
from xrouter.keys.service import CreatedKey
from xrouter.logs import JsonFormatter
from xrouter.settings import Settings

# Shorter values ("on", "1234") would match by accident.
MIN_SECRET_LENGTH = 8


class LogSecrets(logging.Handler):
    """Keeps the text of every record it sees and the secrets registered so far."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.secrets: set[str] = set()
        self.lines: list[str] = []
        self._formatter = JsonFormatter()
        self._secrets_lock = threading.Lock()

    def register(self, value: str | bytes | SecretStr | None) -> None:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if value and len(value) >= MIN_SECRET_LENGTH:
            with self._secrets_lock:
                self.secrets.add(value)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # The message as written and as the JSON line shows it (with its extras and trace).
            self.lines.append(f"{record.getMessage()}\n{self._formatter.format(record)}")
        except Exception:
            self.lines.append(f"{record.msg!r} {record.args!r}")

    def keep(self, output: str) -> None:
        """Keep the lines another process wrote (a gateway started by a test), to be checked."""
        self.lines.extend(line for line in output.splitlines() if line.strip())

    def leaks(self) -> list[tuple[str, str]]:
        """(secret, line) for every logged line that contains a registered secret."""
        with self._secrets_lock:
            secrets = list(self.secrets)
        found = []
        for line in self.lines:
            for secret in secrets:
                # JSON escapes quotes and backslashes: look for the escaped form as well.
                if secret in line or json.dumps(secret, ensure_ascii=False)[1:-1] in line:
                    found.append((secret, line))
        return found


WATCHER = LogSecrets()
register_secret = WATCHER.register
keep_output = WATCHER.keep


def _after_init(cls: type[Any], read: Callable[[Any], list[Any]]) -> None:
    """Register what ``read`` finds on every new instance of ``cls``."""
    original = cls.__init__

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        for value in read(self):
            register_secret(value)

    cls.__init__ = __init__  # type: ignore[misc]


def _password_argument(name: str) -> None:
    original = getattr(Passwords, name)

    @functools.wraps(original)
    async def wrapper(self: Passwords, *args: str) -> Any:
        register_secret(args[-1])  # the password is the last argument of each
        return await original(self, *args)

    setattr(Passwords, name, wrapper)


def _settings_secrets(settings: Settings) -> list[Any]:
    return [
        value
        for name in type(settings).model_fields
        if isinstance(value := getattr(settings, name), SecretStr)
    ]


def install() -> None:
    """Start keeping records and registering secrets (once per session)."""
    root = logging.getLogger()
    root.addHandler(WATCHER)
    # INFO: the per-request access lines must be seen too.
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    _after_init(Settings, _settings_secrets)
    _after_init(CreatedKey, lambda created: [created.key])
    _after_init(CreatedClient, lambda created: [created.secret])
    _password_argument("hash")
    _password_argument("verify")
    original_hasher = KeyHasher.__init__

    def hasher_init(self: KeyHasher, pepper: bytes) -> None:
        register_secret(pepper)
        original_hasher(self, pepper)

    KeyHasher.__init__ = hasher_init  # type: ignore[method-assign]
    for constant in (GIGACHAT_EMULATOR_CREDENTIALS, YANDEX_EMULATOR_API_KEY, "emulator-secret"):
        register_secret(constant)


def check(session: pytest.Session) -> None:
    """Fail the session if a secret was logged; show where (with the secret masked)."""
    leaks = WATCHER.leaks()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"log secrets check: {len(WATCHER.lines)} log records, {len(WATCHER.secrets)} "
            f"secrets, {len(leaks)} leaks"
        )
    if not leaks:
        return
    for secret, line in leaks[:20]:
        masked = line.replace(secret, f"<SECRET {secret[:3]}…>")
        if reporter is not None:
            reporter.write_line(f"SECRET IN LOG: {masked[:500]}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
