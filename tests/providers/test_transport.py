"""The upstream transport's per-request options."""

from __future__ import annotations

from xrouter.providers.transport import Timeouts


def test_a_client_timeout_is_built_once_whatever_the_first_byte_deadline() -> None:
    # The executor gives every request its own first-byte budget; aiohttp never sees it.
    first = Timeouts(connect=3.0, read=40.0, total=90.0, first_byte=1.25).client_timeout()
    second = Timeouts(connect=3.0, read=40.0, total=90.0, first_byte=7.5).client_timeout()
    assert first is second
    assert (first.total, first.sock_connect, first.sock_read) == (90.0, 3.0, 40.0)


def test_timeouts_that_differ_for_aiohttp_get_their_own() -> None:
    base = Timeouts(connect=3.0, read=40.0, total=90.0).client_timeout()
    slower = Timeouts(connect=3.0, read=41.0, total=90.0).client_timeout()
    assert slower is not base
    assert slower.sock_read == 41.0
