"""A misbehaving provider: a proxy in front of the GigaChat emulator that relays everything
(OAuth, models) and spoils chat completions the way ``Spoiler.mode`` says: slow headers, a
trickling or far too large body, an HTML page with 200 or 503."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from tests.servers import BackgroundLoop
from xrouter.providers.transport import MAX_RESPONSE_BYTES

MODES = ("slow_headers", "slow_body", "html", "html_503", "huge")

SESSION = web.AppKey("session", aiohttp.ClientSession)


@dataclass
class Spoiler:
    """How the proxy answers the next chat completions (None: relay them)."""

    mode: str | None = None
    # How long "slow_headers" and "slow_body" stall: longer than the gateway waits.
    stall_seconds: float = 10.0


async def _relay(
    request: web.Request, upstream: str, session: aiohttp.ClientSession
) -> web.Response:
    headers = {
        k: v for k, v in request.headers.items() if k.lower() not in {"host", "content-length"}
    }
    async with session.request(
        request.method, f"{upstream}{request.rel_url}", headers=headers, data=await request.read()
    ) as answer:
        body = await answer.read()
        kept = {
            k: v for k, v in answer.headers.items() if k.lower() in {"content-type", "retry-after"}
        }
        return web.Response(status=answer.status, body=body, headers=kept)


def _proxy_app(upstream: str, spoiler: Spoiler) -> web.Application:
    app = web.Application()

    async def handle(request: web.Request) -> web.StreamResponse:
        mode = spoiler.mode if request.path.endswith("/chat/completions") else None
        if mode == "slow_headers":
            await request.read()
            await asyncio.sleep(spoiler.stall_seconds)
        if mode in {"slow_body", "huge"}:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            await response.write(b'{"choices": [')
            if mode == "slow_body":
                await asyncio.sleep(spoiler.stall_seconds)
            else:
                chunk = b" " * 1024 * 1024
                for _ in range(MAX_RESPONSE_BYTES // len(chunk) + 2):
                    await response.write(chunk)
            return response
        if mode == "html":
            page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            return web.Response(status=200, body=page, content_type="text/html")
        if mode == "html_503":
            page = b"<html><body>Service Temporarily Unavailable</body></html>"
            return web.Response(status=503, body=page, content_type="text/html")
        return await _relay(request, upstream, app[SESSION])

    async def session_context(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = aiohttp.ClientSession()
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_context)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def start_spoiling_proxy(
    loop: BackgroundLoop, upstream: str, spoiler: Spoiler
) -> tuple[str, web.AppRunner]:
    """The proxy serving on a free loopback port, on ``loop``: its URL and its runner (to
    ``cleanup`` on the same loop)."""

    async def start() -> web.AppRunner:
        runner = web.AppRunner(_proxy_app(upstream, spoiler))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    runner = loop.run(start())
    return f"http://127.0.0.1:{runner.addresses[0][1]}", runner
