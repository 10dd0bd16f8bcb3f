"""The models each provider serves, kept in memory and refreshed in the background."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from xrouter.errors import GatewayError
from xrouter.gateway.wire import ModelCard
from xrouter.providers.base import ModelTarget, Provider

log = logging.getLogger(__name__)
UNKNOWN_RETRY_SECONDS = 10.0


class ModelCatalog:
    def __init__(
        self, providers: Mapping[str, Provider], refresh_seconds: float, fetch_timeout: float = 10.0
    ) -> None:
        self._providers = providers
        self._refresh_seconds = refresh_seconds
        self._fetch_timeout = fetch_timeout
        self._cards: dict[str, list[ModelCard]] = {}
        self._ids: dict[str, dict[str, str]] = {}
        # Every listed card by id, for ``card`` on the request path.
        self._by_id: dict[str, ModelCard] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.refresh()
        if self._refresh_seconds > 0:
            self._task = asyncio.create_task(self._refresh_forever(), name="model-catalog")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def refresh(self) -> None:
        """Fetch every provider's list; a provider that fails keeps its last known list."""
        names = list(self._providers)
        results = await asyncio.gather(
            *(self._fetch(self._providers[name]) for name in names), return_exceptions=True
        )
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("could not list the models of %s: %s", name, _describe(result))
                continue
            self._cards[name] = result
            self._ids[name] = {card.id: card.type for card in result}
        self._by_id = {}
        for card in self.models():
            self._by_id.setdefault(card.id, card)

    def models(self) -> list[ModelCard]:
        return [card for name in sorted(self._cards) for card in self._cards[name]]

    def card(self, model_id: str) -> ModelCard | None:
        """The listed model ``model_id``, if a provider lists it."""
        return self._by_id.get(model_id)

    def knows(self, target: ModelTarget, kind: str) -> bool | None:
        """Whether the provider serves this model for ``kind``; None while its list is unknown."""
        ids = self._ids.get(target.provider)
        if ids is None:
            return None
        return ids.get(target.public_id) == kind

    def kind_of(self, target: ModelTarget) -> str | None:
        """What the provider serves this model as (``chat``, ``embeddings``), if it is listed."""
        ids = self._ids.get(target.provider)
        return None if ids is None else ids.get(target.public_id)

    async def _fetch(self, provider: Provider) -> list[ModelCard]:
        return await asyncio.wait_for(provider.list_models(), self._fetch_timeout)

    async def _refresh_forever(self) -> None:
        while True:
            # A provider whose list is still unknown is asked again soon, not in minutes.
            unknown = any(name not in self._cards for name in self._providers)
            pause = min(self._refresh_seconds, UNKNOWN_RETRY_SECONDS) if unknown else None
            await asyncio.sleep(pause or self._refresh_seconds)
            await self.refresh()


def _describe(error: BaseException) -> str:
    if isinstance(error, GatewayError):
        return error.message
    if isinstance(error, TimeoutError):
        return "timed out"
    return type(error).__name__
