"""Registered OAuth clients and their redirect URIs.

Redirect URIs are compared as exact strings, with the one exception RFC 8252 §7.3 requires for
native apps: a registered loopback IP URI (``http://127.0.0.1/cb``, ``http://[::1]/cb``) matches
any port, because the app picks a free port when it starts.
"""

from __future__ import annotations

import builtins
import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from xrouter.auth.signing_keys import SigningKeys
from xrouter.errors import InvalidRequestError
from xrouter.keys.hashing import KeyHasher
from xrouter.storage.models import OAuthClient, new_id, utc_now

CLIENT_ID_PREFIX = "xrc_"
CLIENT_SECRET_PREFIX = "xrcs_"  # noqa: S105 (a prefix, not a secret)
MAX_REDIRECT_URIS = 20
MAX_URI_LENGTH = 2000


class ClientError(InvalidRequestError):
    """A client cannot be registered as asked."""


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """A registered client (never its secret hash)."""

    id: str
    name: str
    redirect_uris: tuple[str, ...]
    confidential: bool
    created_at: datetime
    active: bool

    @classmethod
    def from_row(cls, row: OAuthClient) -> ClientInfo:
        return cls(
            id=row.id,
            name=row.name,
            redirect_uris=tuple(row.redirect_uris),
            confidential=row.secret_hash is not None,
            created_at=row.created_at,
            active=row.disabled_at is None,
        )

    def allows_redirect(self, uri: str) -> bool:
        """Whether ``uri`` is one of the registered redirect URIs (see the module docstring)."""
        return any(redirect_uri_matches(registered, uri) for registered in self.redirect_uris)


@dataclass(frozen=True, slots=True)
class CreatedClient:
    """A new client; ``secret`` (confidential clients only) is shown this once."""

    info: ClientInfo
    secret: str | None = field(default=None, repr=False)


def redirect_uri_matches(registered: str, given: str) -> bool:
    """Exact match, or the same loopback IP URI on another port (RFC 8252 §7.3)."""
    if hmac.compare_digest(registered.encode(), given.encode()):
        return True
    if not registered.startswith("http://"):
        return False
    try:
        want, got = urlsplit(registered), urlsplit(given)
        _ = (want.port, got.port)  # a malformed port raises here
    except ValueError:
        return False
    if not _is_loopback_ip(want.hostname) or got.scheme != "http":
        return False
    # Any port; everything else identical.
    return (want.hostname, want.path, want.query, want.username, want.password) == (
        got.hostname,
        got.path,
        got.query,
        got.username,
        got.password,
    ) and not got.fragment


def _is_loopback_ip(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_host(host: str | None) -> bool:
    """A loopback IP or ``localhost``."""
    return host == "localhost" or _is_loopback_ip(host)


def check_redirect_uri(uri: str) -> str:
    """Refuse a redirect URI that RFC 6749 §3.1.2 and RFC 8252 do not allow."""
    uri = uri.strip()
    if not uri or len(uri) > MAX_URI_LENGTH:
        raise ClientError("A redirect URI must be 1 to 2000 characters.", param="redirect_uri")
    try:
        parts = urlsplit(uri)
        host = parts.hostname
    except ValueError:
        raise ClientError(f"'{uri}' is not a valid URI.", param="redirect_uri") from None
    if parts.fragment or "#" in uri:
        raise ClientError("A redirect URI must not contain a fragment.", param="redirect_uri")
    scheme = parts.scheme.lower()
    if scheme == "https" and host:
        return uri
    if scheme == "http" and is_loopback_host(host):
        return uri
    # Private-use schemes of native apps are reverse domain names (RFC 8252 §7.1).
    if "." in scheme and scheme not in ("http", "https") and not host:
        return uri
    raise ClientError(
        f"'{uri}' is not allowed: use https, http on a loopback address, or a native app's "
        "reverse-domain scheme.",
        param="redirect_uri",
    )


class ClientService:
    """Registering and reading OAuth clients."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        hasher: KeyHasher,
        signing_keys: SigningKeys | None = None,
    ) -> None:
        """``signing_keys`` (a running server's) are activated by the first registration: a
        client can be issued tokens from then on, and the keys are published ahead of that."""
        self._sessions = session_factory
        self._hasher = hasher
        self._signing_keys = signing_keys

    async def create(
        self, name: str, redirect_uris: builtins.list[str], *, confidential: bool = False
    ) -> CreatedClient:
        """Register a client; a confidential one gets a secret, returned once."""
        name = name.strip()
        if not name or len(name) > 200:
            raise ClientError("The client name must be 1 to 200 characters.", param="name")
        uris = list(dict.fromkeys(check_redirect_uri(uri) for uri in redirect_uris))
        if not uris or len(uris) > MAX_REDIRECT_URIS:
            raise ClientError(
                f"Register 1 to {MAX_REDIRECT_URIS} redirect URIs.", param="redirect_uri"
            )
        secret = CLIENT_SECRET_PREFIX + secrets.token_urlsafe(32) if confidential else None
        row = OAuthClient(
            id=new_id(CLIENT_ID_PREFIX),
            name=name,
            redirect_uris=uris,
            secret_hash=self._hasher.digest(secret) if secret else None,
            created_at=utc_now(),
            disabled_at=None,
        )
        async with self._sessions() as session, session.begin():
            session.add(row)
        if self._signing_keys is not None:
            await self._signing_keys.activate()
        return CreatedClient(info=ClientInfo.from_row(row), secret=secret)

    async def get(self, client_id: str) -> ClientInfo | None:
        """An active client by id, or None."""
        if len(client_id) > 64:
            return None
        async with self._sessions() as session:
            row = await session.get(OAuthClient, client_id)
        if row is None or row.disabled_at is not None:
            return None
        return ClientInfo.from_row(row)

    async def list(self) -> builtins.list[ClientInfo]:
        """Every client, oldest first."""
        async with self._sessions() as session:
            rows = await session.scalars(select(OAuthClient).order_by(OAuthClient.created_at))
            return [ClientInfo.from_row(row) for row in rows]

    async def authenticate(self, client_id: str, secret: str | None) -> ClientInfo | None:
        """The client if ``secret`` is right for it (None for a public client), else None."""
        if len(client_id) > 64:
            return None
        async with self._sessions() as session:
            row = await session.get(OAuthClient, client_id)
        if row is None or row.disabled_at is not None:
            return None
        if row.secret_hash is None:
            # A public client must not present a secret it does not have.
            return ClientInfo.from_row(row) if secret is None else None
        if secret is None or not self._hasher.matches(secret, row.secret_hash):
            return None
        return ClientInfo.from_row(row)
