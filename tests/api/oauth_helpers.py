"""A browser and a public OAuth client played with httpx against a running gateway."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from tests.servers import RunningGateway
from xrouter.auth.clients import CreatedClient
from xrouter.auth.users import UserInfo

PASSWORD = "correct horse battery staple"
REDIRECT_URI = "https://app.example/callback"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def new_verifier() -> str:
    return secrets.token_urlsafe(48)


def challenge_of(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def make_user(gateway: RunningGateway, *, admin: bool = False) -> UserInfo:
    email = f"user-{uuid.uuid4().hex[:10]}@example.com"
    return gateway.loop.run(gateway.runtime.auth.users.create(email, PASSWORD, is_admin=admin))


def make_client(
    gateway: RunningGateway,
    redirect_uris: tuple[str, ...] = (REDIRECT_URI,),
    *,
    confidential: bool = False,
) -> CreatedClient:
    clients = gateway.runtime.auth.clients
    return gateway.loop.run(
        clients.create("Test app", list(redirect_uris), confidential=confidential)
    )


def hidden_fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(page)}


def query_of(location: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


@dataclass
class Browser:
    """An httpx client that keeps cookies and does not follow redirects by itself."""

    http: httpx.Client

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.http.close()

    def login(self, email: str, password: str = PASSWORD, next_path: str = "") -> httpx.Response:
        page = self.http.get("/ui/login", params={"next": next_path} if next_path else None)
        fields = hidden_fields(page.text)
        return self.http.post("/ui/login", data={**fields, "email": email, "password": password})

    def authorize(self, params: dict[str, str], decision: str = "allow") -> httpx.Response:
        """Open the authorize URL, follow the login redirect if signed in, approve or deny;
        the response is the redirect back to the client (or whatever the server answered)."""
        consent = self.http.get("/oauth/authorize?" + urlencode(params))
        if consent.status_code != 200:
            return consent
        fields = hidden_fields(consent.text)
        return self.http.post("/oauth/authorize", data={**fields, "decision": decision})


def authorize_params(client: str, verifier: str, **overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": client,
        "redirect_uri": REDIRECT_URI,
        "code_challenge": challenge_of(verifier),
        "code_challenge_method": "S256",
        "state": secrets.token_urlsafe(16),
        "scope": "inference",
        **overrides,
    }
    return {name: value for name, value in params.items() if value is not None}


def signed_in_browser(gateway: RunningGateway, user: UserInfo) -> Browser:
    browser = Browser(httpx.Client(base_url=gateway.url, timeout=30))
    response = browser.login(user.email)
    assert response.status_code == 303, response.text
    return browser


def get_code(gateway: RunningGateway, browser: Browser, client_id: str, verifier: str) -> str:
    response = browser.authorize(authorize_params(client_id, verifier))
    assert response.status_code == 303, response.text
    return query_of(response.headers["location"])["code"]


def exchange(
    gateway: RunningGateway | str, client_id: str, code: str, verifier: str, **overrides: str
) -> httpx.Response:
    """POST /oauth/token as a public client (``gateway`` or a base URL)."""
    base_url = gateway if isinstance(gateway, str) else gateway.url
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": client_id,
        "code_verifier": verifier,
        **overrides,
    }
    return httpx.post(f"{base_url}/oauth/token", data=data, timeout=30)
