"""Password hashing with argon2id (RFC 9106), through argon2-cffi."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024


class WeakPasswordError(ValueError):
    """A new password does not meet the length rules."""


class Passwords:
    """Hashes and verifies passwords off the event loop (argon2 is deliberately slow).

    ``verify_unknown`` spends the same work on an unknown account, so that response time does
    not tell which emails have accounts.
    """

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        # argon2-cffi's defaults are RFC 9106's second recommended profile (argon2id, 64 MiB).
        self._hasher = hasher or PasswordHasher()
        self._dummy_hash = self._hasher.hash("xrouter-timing-equaliser")

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
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str, password: str) -> bool:
        """Whether ``password`` matches ``stored_hash`` (argon2 compares in constant time)."""
        return await asyncio.to_thread(self._verify, stored_hash, password)

    async def verify_unknown(self, password: str) -> bool:
        """Do the work of a verification for an account that does not exist; always False."""
        await asyncio.to_thread(self._verify, self._dummy_hash, password + "\0")
        return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether ``stored_hash`` was made with weaker parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True

    def _verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
