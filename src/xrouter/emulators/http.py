"""HTTP plumbing both emulators share: JSON bodies, artificial latency, paced streams."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from aiohttp import web

from xrouter.emulators.options import EmulatorOptions

encode = msgspec.json.Encoder().encode


class EmulatedApiError(Exception):
    """Raised by a handler; the emulator renders it in its provider's error body."""

    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=encode(payload), status=status, content_type="application/json")


async def delay(options: EmulatorOptions) -> None:
    """The configured latency before an answer."""
    if options.latency_ms:
        await asyncio.sleep(options.latency_ms / 1000)


async def read_json_object(request: web.Request, syntax_error: str) -> dict[str, Any]:
    """The request body as a JSON object; 413 over the size limit, 400 with ``syntax_error``
    (followed by what is wrong) otherwise."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise EmulatedApiError(413) from None
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise EmulatedApiError(400, f"{syntax_error}: the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise EmulatedApiError(400, f"{syntax_error}: the body must be a JSON object")
    return body


async def write_paced(
    request: web.Request, options: EmulatorOptions, headers: dict[str, str], parts: list[bytes]
) -> web.StreamResponse:
    """Stream ``parts`` with ``stream_delay_ms`` between them (all at once when it is 0)."""
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    if not options.stream_delay_ms:
        await response.write(b"".join(parts))
    else:
        for index, part in enumerate(parts):
            if index:
                await asyncio.sleep(options.stream_delay_ms / 1000)
            await response.write(part)
    await response.write_eof()
    return response
