"""Keys are stored as HMAC-SHA-256(pepper, key): a stolen database alone cannot verify a guess."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import tempfile
from pathlib import Path

from xrouter.settings import ConfigurationError, Settings

logger = logging.getLogger(__name__)

MIN_PEPPER_BYTES = 16
_GENERATED_PEPPER_BYTES = 32


class KeyHasher:
    """Computes and checks key digests with a server-side pepper."""

    def __init__(self, pepper: bytes) -> None:
        if len(pepper) < MIN_PEPPER_BYTES:
            raise ValueError(f"the key pepper must be at least {MIN_PEPPER_BYTES} bytes")
        # Keyed once; copying the keyed state is cheaper than re-keying on every request.
        self._keyed = hmac.new(pepper, digestmod=hashlib.sha256)

    def digest(self, key: str) -> str:
        """The hex HMAC-SHA-256 of ``key``: what the database stores and the cache indexes."""
        mac = self._keyed.copy()
        mac.update(key.encode("utf-8"))
        return mac.hexdigest()

    def matches(self, key: str, stored_digest: str) -> bool:
        """Whether ``key`` hashes to ``stored_digest``, compared in constant time."""
        return hmac.compare_digest(self.digest(key), stored_digest)

    def __repr__(self) -> str:
        return "KeyHasher(pepper=<hidden>)"


def load_pepper(settings: Settings) -> bytes:
    """The pepper from ``settings.key_pepper``, else from ``settings.key_pepper_file``.

    A missing file is created with 32 random bytes (hex) readable only by its owner. The pepper
    is used as text either way, so the same value in the environment or the file is equivalent.
    """
    if settings.key_pepper is not None:
        pepper = settings.key_pepper.get_secret_value().encode("utf-8")
        if len(pepper) < MIN_PEPPER_BYTES:
            raise ConfigurationError(
                f"XROUTER_KEY_PEPPER: must be at least {MIN_PEPPER_BYTES} characters"
            )
        return pepper
    return _read_or_create(settings.key_pepper_file)


def _read_or_create(path: Path) -> bytes:
    try:
        _create(path)
        logger.info("created a new key pepper in %s", path)
    except FileExistsError:
        pass
    except OSError as error:
        message = f"XROUTER_KEY_PEPPER_FILE: cannot create {path}: {error}"
        raise ConfigurationError(message) from None
    try:
        pepper = path.read_bytes().strip()
        mode = path.stat().st_mode
    except OSError as error:
        raise ConfigurationError(f"XROUTER_KEY_PEPPER_FILE: cannot read {path}: {error}") from None
    if len(pepper) < MIN_PEPPER_BYTES:
        raise ConfigurationError(
            f"XROUTER_KEY_PEPPER_FILE: {path} must hold at least {MIN_PEPPER_BYTES} characters"
        )
    if os.name == "posix" and mode & 0o077:
        logger.warning("key pepper file %s is readable by other users; chmod 600 it", path)
    return pepper


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside, then linked into place: a process starting at the same moment sees either
    # no file or the complete one, and os.link refuses to replace a pepper that already exists.
    descriptor, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(_GENERATED_PEPPER_BYTES) + "\n")
        os.chmod(scratch, 0o600)
        os.link(scratch, path)
    finally:
        os.unlink(scratch)
