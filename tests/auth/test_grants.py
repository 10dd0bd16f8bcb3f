"""Code exchange and revocation on SQLite and PostgreSQL, with two instances sharing one
database: the database alone decides which exchange of a code wins."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.auth.conftest import AuthServer
from xrouter.auth.clients import ClientInfo
from xrouter.auth.codes import NewCode
from xrouter.auth.oauth_errors import OAuthError
from xrouter.auth.pkce import s256_challenge
from xrouter.auth.tokens import TokenError
from xrouter.auth.users import UserInfo

VERIFIER = "v" * 43 + "-._~0123456789"
REDIRECT = "https://app.example/cb"


async def new_code(server: AuthServer, user: UserInfo, client: ClientInfo) -> str:
    return await server.grants.issue_code(
        NewCode(
            user_id=user.id,
            client_id=client.id,
            redirect_uri=REDIRECT,
            code_challenge=s256_challenge(VERIFIER),
            code_challenge_method="S256",
            scope="inference",
        )
    )


async def test_a_code_is_exchanged_once_for_a_verifiable_token(
    server: AuthServer, user: UserInfo, client: ClientInfo
) -> None:
    code = await new_code(server, user, client)
    grant = await server.grants.exchange_code(client, code, REDIRECT, VERIFIER)
    claims = server.tokens.verify(grant.access_token)
    assert (claims.subject, claims.client_id, claims.scopes) == (
        user.id,
        client.id,
        frozenset({"inference"}),
    )
    assert claims.expires_at - claims.issued_at == 365 * 86400
    introspected = await server.grants.introspect(grant.access_token)
    assert introspected["active"] is True
    assert introspected["username"] == "alice@example.com"
    assert introspected["jti"] == claims.jti


async def test_parallel_exchanges_on_two_instances_have_exactly_one_winner(
    server: AuthServer, second_server: AuthServer, user: UserInfo, client: ClientInfo
) -> None:
    for _ in range(5):
        code = await new_code(server, user, client)
        outcomes = await asyncio.gather(
            server.grants.exchange_code(client, code, REDIRECT, VERIFIER),
            second_server.grants.exchange_code(client, code, REDIRECT, VERIFIER),
            return_exceptions=True,
        )
        errors = [outcome for outcome in outcomes if isinstance(outcome, OAuthError)]
        assert len(errors) == 1, outcomes
        assert errors[0].error == "invalid_grant"
        assert len([outcome for outcome in outcomes if not isinstance(outcome, BaseException)]) == 1


async def test_replay_revokes_on_every_instance(
    # The second instance starts once OAuth is in use (a client exists), so it holds the keys.
    server: AuthServer,
    user: UserInfo,
    client: ClientInfo,
    second_server: AuthServer,
) -> None:
    code = await new_code(server, user, client)
    grant = await server.grants.exchange_code(client, code, REDIRECT, VERIFIER)
    assert second_server.tokens.verify(grant.access_token).subject == user.id
    with pytest.raises(OAuthError, match="already used"):
        await second_server.grants.exchange_code(client, code, REDIRECT, VERIFIER)
    # The replaying instance knows at once; the first learns it from the database poll.
    with pytest.raises(TokenError, match="revoked"):
        second_server.tokens.verify(grant.access_token)
    deadline = time.monotonic() + 5
    while grant.access_token and time.monotonic() < deadline:
        try:
            server.tokens.verify(grant.access_token)
        except TokenError:
            break
        await asyncio.sleep(0.05)
    with pytest.raises(TokenError, match="revoked"):
        server.tokens.verify(grant.access_token)
    assert (await server.grants.introspect(grant.access_token)) == {"active": False}


async def test_authorized_apps_lists_and_revokes(
    server: AuthServer, user: UserInfo, client: ClientInfo
) -> None:
    for _ in range(2):
        code = await new_code(server, user, client)
        await server.grants.exchange_code(client, code, REDIRECT, VERIFIER)
    apps = await server.grants.authorized_apps(user.id)
    assert [(app.client_id, app.tokens, app.scopes) for app in apps] == [
        (client.id, 2, "inference")
    ]
    assert apps[0].first_authorized <= apps[0].last_authorized
    assert apps[0].last_authorized.tzinfo is not None
    assert await server.grants.revoke_app(user.id, client.id) == 2
    assert await server.grants.authorized_apps(user.id) == []


async def test_revoke_token_only_for_its_own_client(
    server: AuthServer, user: UserInfo, client: ClientInfo
) -> None:
    other = (await server.clients.create("Other", [REDIRECT])).info
    grant = await server.grants.exchange_code(
        client, await new_code(server, user, client), REDIRECT, VERIFIER
    )
    with pytest.raises(OAuthError) as refused:
        await server.grants.revoke_token(other, grant.access_token)
    assert refused.value.error == "unauthorized_client"
    server.tokens.verify(grant.access_token)
    await server.grants.revoke_token(client, "not-a-token")  # RFC 7009: no error
    await server.grants.revoke_token(client, grant.access_token)
    with pytest.raises(TokenError, match="revoked"):
        server.tokens.verify(grant.access_token)
