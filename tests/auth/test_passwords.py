from __future__ import annotations

from argon2 import PasswordHasher

from xrouter.auth.passwords import Passwords


class CountingHasher(PasswordHasher):
    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.hashes = 0

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.hashes += 1
        return super().hash(password, salt=salt)


async def test_nothing_is_hashed_until_the_first_use() -> None:
    hasher = CountingHasher()
    passwords = Passwords(hasher)
    assert hasher.hashes == 0
    stored = await passwords.hash("a long enough password")
    # The first use also makes the timing equaliser's hash, whatever the use is.
    assert hasher.hashes == 2
    assert await passwords.verify(stored, "a long enough password")
    assert not await passwords.verify_unknown("a long enough password")
    assert hasher.hashes == 2


async def test_a_first_unknown_account_makes_the_equaliser_hash() -> None:
    hasher = CountingHasher()
    passwords = Passwords(hasher)
    assert not await passwords.verify_unknown("a long enough password")
    assert hasher.hashes == 1
    assert not await passwords.verify(await passwords.hash("x" * 12), "y" * 12)
