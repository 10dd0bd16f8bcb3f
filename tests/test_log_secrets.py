"""The session-wide check that no secret reaches a log record must be able to fail."""

from __future__ import annotations

import logging

from pydantic import SecretStr

from tests.log_secrets import WATCHER, LogSecrets
from xrouter.keys.format import generate_key
from xrouter.keys.service import CreatedKey


def test_a_logged_secret_is_found_in_any_form() -> None:
    watcher = LogSecrets()
    logger = logging.getLogger("tests.log_secrets.probe")
    logger.addHandler(watcher)
    logger.propagate = False
    try:
        watcher.register(SecretStr("pepper-0123456789"))
        watcher.register(b'quoted"secret\\value')
        watcher.register("short")  # too short to look for
        logger.warning("nothing to see")
        logger.warning("pepper is %s", "pepper-0123456789")
        logger.warning("in extras", extra={"detail": 'quoted"secret\\value'})
        try:
            raise ValueError("short")
        except ValueError:
            logger.exception("a trace")
    finally:
        logger.removeHandler(watcher)
    assert sorted(secret for secret, _ in watcher.leaks()) == [
        "pepper-0123456789",
        'quoted"secret\\value',
    ]


def test_created_keys_register_themselves() -> None:
    key = generate_key()
    CreatedKey(key=key, info=None)  # type: ignore[arg-type]
    assert key in WATCHER.secrets
