"""YandexGPT emulator: one protobuf-based core (``yandex_core``) behind several faces.

- REST (``yandex_rest``): the Foundation Models API as gRPC transcoding, ``/foundationModels/v1``
  and ``/operations``, plus the IAM token endpoint ``/iam/v1/tokens``;
- OpenAI-compatible (``yandex_openai``): ``/v1/chat/completions``;
- gRPC (``yandex_grpc``): the ``yandexcloud`` services, started with ``start_grpc``.

All faces share one ``YandexCore``: the same replies, versions, operations, issued IAM tokens
and injected failures, whichever protocol a client speaks.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import grpc
from aiohttp import web

from xrouter.emulators import yandex_openai, yandex_rest
from xrouter.emulators.options import EmulatorOptions
from xrouter.emulators.yandex_core import (
    EMBEDDING_DIMENSIONS,
    EMBEDDING_VERSIONS,
    ERRORS,
    MODEL_VERSIONS,
    YandexCore,
    YandexStats,
)
from xrouter.emulators.yandex_generation import CONTENT_FILTER_MARKER
from xrouter.emulators.yandex_grpc import start_grpc_server
from xrouter.emulators.yandex_iam import IAM_TOKENS_PATH, load_authorized_key_file
from xrouter.emulators.yandex_rest import COMPLETION_PATH, CORE_KEY, EMBEDDING_PATH, TOKENIZE_PATH

__all__ = [
    "COMPLETION_PATH",
    "CONTENT_FILTER_MARKER",
    "CORE_KEY",
    "EMBEDDING_DIMENSIONS",
    "EMBEDDING_PATH",
    "EMBEDDING_VERSIONS",
    "ERRORS",
    "IAM_TOKENS_PATH",
    "MODEL_VERSIONS",
    "STATS_KEY",
    "TOKENIZE_PATH",
    "YandexStats",
    "create_app",
    "start_grpc",
]

STATS_KEY = web.AppKey("yandex_stats", YandexStats)


def create_app(
    options: EmulatorOptions, service_account_keys: Iterable[Path] = ()
) -> web.Application:
    """The emulator's HTTP faces over a new core.

    ``service_account_keys`` are authorized key JSON files whose JWTs the IAM endpoint
    accepts. ``app[CORE_KEY]`` is the core (register more keys with ``core.iam.register``)
    and ``app[STATS_KEY]`` its request counters.
    """
    app = web.Application(client_max_size=64 * 1024 * 1024)
    core = YandexCore(options)
    for path in service_account_keys:
        core.iam.register(load_authorized_key_file(path))
    app[CORE_KEY] = core
    app[STATS_KEY] = core.stats
    yandex_rest.add_routes(app)
    yandex_openai.add_routes(app)
    return app


async def start_grpc(app: web.Application, host: str, port: int) -> tuple[grpc.aio.Server, int]:
    """Start the gRPC face of ``app``'s core in the running loop; returns it and its port."""
    return await start_grpc_server(app[CORE_KEY], host, port)
