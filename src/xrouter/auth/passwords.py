"""Password hashing with argon2id (RFC 9106), through argon2-cffi.

argon2 is imported, and the timing-equaliser hash made, on first use in the worker thread that
hashes: a worker that never signs anyone in neither loads the library nor spends the 64 MiB and
tens of milliseconds of one hash at start.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from argon2 import PasswordHasher

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
_EQUALISER = "xrouter-timing-equaliser"


class WeakPasswordError(ValueError):
    """A new password does not meet the length rules."""


class Passwords:
    """Hashes and verifies passwords off the event loop (argon2 is deliberately slow).

    ``verify_unknown`` spends the same work on an unknown account, so that response time does
    not tell which emails have accounts.
    """

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher
        self._dummy_hash: str | None = None

    @staticmethod
    def check_strength(password: str) -> None:
        """Refuse passwords that are too short or absurdly long."""
        if len(password) < MIN_PASSWORD_LENGTH:
            raise WeakPasswordError(
                f"The password must be at least {MIN_PASSWORD_LENGTH} characters."
            )
        if len(password) > MAX_PASSWORD_LENGTH:
            raise WeakPasswordError(
                f"The password must be at most {MAX_PASSWORD_LENGTH} characters."
            )

    async def hash(self, password: str) -> str:
        """The argon2id PHC string of ``password``."""
        return await asyncio.to_thread(self._hash, password)

    async def verify(self, stored_hash: str, password: str) -> bool:
        """Whether ``password`` matches ``stored_hash`` (argon2 compares in constant time)."""
        return await asyncio.to_thread(self._verify, stored_hash, password)

    async def verify_unknown(self, password: str) -> bool:
        """Do the work of a verification for an account that does not exist; always False."""
        await asyncio.to_thread(self._verify_unknown, password)
        return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether ``stored_hash`` was made with weaker parameters than the current ones."""
        from argon2.exceptions import InvalidHashError

        try:
            return self._ready_hasher().check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True

    def _ready_hasher(self) -> PasswordHasher:
        # The first use, in a worker thread, pays for the import and the equaliser's hash
        # whatever it does, so that a first login does not tell a known account by its timing.
        hasher = self._hasher
        if hasher is None or self._dummy_hash is None:
            if hasher is None:
                from argon2 import PasswordHasher

                # argon2-cffi's defaults are RFC 9106's second recommended profile (argon2id,
                # 64 MiB).
                hasher = PasswordHasher()
            self._dummy_hash = hasher.hash(_EQUALISER)
            self._hasher = hasher
        return hasher

    def _hash(self, password: str) -> str:
        return self._ready_hasher().hash(password)

    def _verify_unknown(self, password: str) -> None:
        self._ready_hasher()
        assert self._dummy_hash is not None
        self._verify(self._dummy_hash, password + "\0")

    def _verify(self, stored_hash: str, password: str) -> bool:
        from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

        try:
            return self._ready_hasher().verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
