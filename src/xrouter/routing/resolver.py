"""Finds the provider and upstream model that serve a client's model id."""

from __future__ import annotations

from collections.abc import Mapping

from xrouter.errors import ModelNotFoundError
from xrouter.providers.base import ModelTarget, Provider
from xrouter.routing.catalog import ModelCatalog
from xrouter.routing.model_id import parse_model_id


class ModelResolver:
    def __init__(self, providers: Mapping[str, Provider], catalog: ModelCatalog) -> None:
        self._providers = providers
        self._catalog = catalog

    def resolve(self, model_id: str, kind: str = "chat") -> tuple[Provider, ModelTarget]:
        """The provider and target for ``model_id``, or ``ModelNotFoundError``.

        Uses only memory: the catalogue is refreshed in the background, and a model is refused
        only when the provider's catalogue is known and lacks it.
        """
        target = parse_model_id(model_id)
        provider = self._providers.get(target.provider)
        if provider is None:
            enabled = ", ".join(sorted(self._providers)) or "none"
            raise ModelNotFoundError(
                model_id,
                f"does not exist: unknown provider '{target.provider}' (enabled: {enabled})",
            )
        if self._catalog.knows(target, kind) is False:
            raise ModelNotFoundError(model_id)
        return provider, target
