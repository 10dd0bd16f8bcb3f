"""The practical Python limit: a bare aiohttp proxy that forwards /v1/chat/completions to one
upstream with a fixed Authorization header and no other work. Reference for bench/run.py."""

from __future__ import annotations

import argparse

import aiohttp
from aiohttp import web


def create_app(upstream: str, authorization: str) -> web.Application:
    async def open_session(app: web.Application) -> None:
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))

    async def close_session(app: web.Application) -> None:
        await app["session"].close()

    async def proxy(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {"Authorization": authorization, "Content-Type": "application/json"}
        async with request.app["session"].post(
            upstream, data=body, headers=headers
        ) as upstream_response:
            response = web.StreamResponse(
                status=upstream_response.status,
                headers={"Content-Type": upstream_response.headers.get("Content-Type", "")},
            )
            await response.prepare(request)
            async for chunk in upstream_response.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    app = web.Application()
    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.router.add_post("/v1/chat/completions", proxy)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--authorization", required=True)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(
        create_app(args.upstream, args.authorization),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
    )
