"""Yandex Cloud credentials: a fixed API key or IAM token, or a service account's authorized
key exchanged for IAM tokens.

The exchange signs a PS256 JWT with the authorized key and posts it to the IAM endpoint. An
IAM token lives up to 12 hours; Yandex advises renewing it about hourly, so the cache renews it
after an hour (or half its lifetime, if shorter) in the background while requests go on with
the current one. Only when no usable token is left do requests wait, and then all of them wait
for the same single exchange.

joserfc (and the cryptography under it, about 12 MiB) is imported by the first exchange, in a
worker thread that also reads the key: a worker never pays for it unless it uses a service
account key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import msgspec

from xrouter.errors import UpstreamError
from xrouter.providers.errors import malformed_response, upstream_status_error
from xrouter.providers.transport import parse_retry_after, transport_error

if TYPE_CHECKING:
    from joserfc.jwk import RSAKey

NAME = "yandex"
# The audience Yandex requires, whatever address the token endpoint is reached at.
IAM_AUDIENCE = "https://iam.api.cloud.yandex.net/iam/v1/tokens"
JWT_LIFETIME_SECONDS = 3600
RENEW_AFTER_SECONDS = 3600.0
# A token this close to its expiry is no longer handed out.
EXPIRY_MARGIN_SECONDS = 60.0
# After a failed background renewal, the next attempt waits this long.
RENEW_RETRY_SECONDS = 10.0
# A 401 within this long after a token was obtained does not discard it again: concurrent
# requests refused with the previous token would otherwise start one exchange each.
INVALIDATE_GRACE_SECONDS = 5.0
IAM_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10)
_FRACTION = re.compile(r"\.(\d{6})\d+")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AuthorizedKey:
    """A service account's authorized key: the private key (PEM) signs the token request."""

    key_id: str
    service_account_id: str
    private_key_pem: str = field(repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuthorizedKey:
        pem = str(data["private_key"])
        if "-----BEGIN" not in pem:
            raise ValueError("private_key is not a PEM key")
        # Yandex puts a "PLEASE DO NOT REMOVE THIS LINE!" comment before the PEM block.
        return cls(str(data["id"]), str(data["service_account_id"]), pem[pem.index("-----BEGIN") :])

    @classmethod
    def from_file(cls, path: Path) -> AuthorizedKey:
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))

    def private_key(self) -> RSAKey:
        """The key, read from the PEM: tens of milliseconds of CPU (the key is checked), and
        the first call imports joserfc."""
        from joserfc.jwk import RSAKey

        return RSAKey.import_key(self.private_key_pem)

    def signed_jwt(self, now: float, private_key: RSAKey | None = None) -> str:
        """The JWT that ``POST /iam/v1/tokens`` exchanges for an IAM token, signed with
        ``private_key`` (by default read anew)."""
        from joserfc import jwt

        issued = int(now)
        header = {"typ": "JWT", "alg": "PS256", "kid": self.key_id}
        claims = {
            "iss": self.service_account_id,
            "aud": IAM_AUDIENCE,
            "iat": issued,
            "exp": issued + JWT_LIFETIME_SECONDS,
        }
        key = private_key or self.private_key()
        return jwt.encode(header, claims, key, algorithms=["PS256"])


class _IamToken(msgspec.Struct):
    iamToken: str
    expiresAt: str | None = None


def _expiry(value: str | None, fallback: float) -> float:
    if not value:
        return fallback
    try:
        # Yandex may send nanoseconds; Python reads at most microseconds.
        return datetime.fromisoformat(_FRACTION.sub(r".\1", value)).timestamp()
    except ValueError:
        return fallback


class IamTokenCache:
    """IAM tokens for a service account, renewed before expiry with one exchange at a time."""

    def __init__(
        self,
        key: AuthorizedKey,
        iam_url: str,
        session: aiohttp.ClientSession,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` schedules renewals (monotonic, so wall-clock jumps do not matter); the
        JWT and the token's ``expiresAt`` are in wall-clock time."""
        self._key = key
        self._private_key: RSAKey | None = None
        self._url = iam_url
        self._session = session
        self._clock = clock
        self._token: str | None = None
        self._obtained_at = 0.0
        self._renew_at = 0.0
        self._usable_until = 0.0
        self._exchange: asyncio.Task[str] | None = None
        self.exchanges = 0

    async def token(self) -> str:
        """A usable IAM token; waits (with every other caller) only when none is left."""
        now = self._clock()
        token = self._token
        if token is not None and now < self._usable_until:
            if now >= self._renew_at:
                self._start_exchange()
            return token
        return await asyncio.shield(self._start_exchange())

    def invalidate(self) -> None:
        """Drop the token after the API refused it, so the next request exchanges anew."""
        if self._clock() - self._obtained_at > INVALIDATE_GRACE_SECONDS:
            self._token = None

    def _start_exchange(self) -> asyncio.Task[str]:
        if self._exchange is None or self._exchange.done():
            self._exchange = asyncio.create_task(self._run_exchange(), name="yandex-iam-token")
            self._exchange.add_done_callback(self._after_exchange)
        return self._exchange

    def _after_exchange(self, task: asyncio.Task[str]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            # Requests that waited for the exchange got the error; a background renewal only
            # logs it and tries again a little later with the current token still in use.
            self._renew_at = self._clock() + RENEW_RETRY_SECONDS
            message = error.message if isinstance(error, UpstreamError) else type(error).__name__
            log.warning("could not renew the Yandex IAM token: %s", message)

    async def _run_exchange(self) -> str:
        if self._private_key is None:
            # Read once, off the event loop: the first exchange also imports joserfc.
            self._private_key = await asyncio.to_thread(self._key.private_key)
        now = self._clock()
        wall = time.time()
        body = msgspec.json.encode({"jwt": self._key.signed_jwt(wall, self._private_key)})
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        self.exchanges += 1
        try:
            async with self._session.post(
                self._url, data=body, headers=headers, timeout=IAM_TIMEOUT
            ) as response:
                payload = await response.read()
                if response.status != 200:
                    retry_after = parse_retry_after(response.headers.get("retry-after"))
                    # A refused key is the operator's problem: shown as an auth failure.
                    status = response.status if response.status >= 500 else 401
                    raise upstream_status_error(NAME, status, None, retry_after)
        except UpstreamError:
            raise
        except Exception as error:
            raise transport_error(NAME, error) from error
        try:
            answer = msgspec.json.decode(payload, type=_IamToken)
        except msgspec.DecodeError:
            raise malformed_response(NAME, "IAM token") from None
        lifetime = _expiry(answer.expiresAt, wall + RENEW_AFTER_SECONDS) - wall
        self._token = answer.iamToken
        self._obtained_at = now
        self._renew_at = now + min(RENEW_AFTER_SECONDS, lifetime / 2)
        self._usable_until = now + lifetime - min(EXPIRY_MARGIN_SECONDS, lifetime / 4)
        return answer.iamToken
