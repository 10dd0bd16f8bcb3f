"""Finds the provider and upstream model that serve a client's model id or route alias."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from xrouter.errors import ModelNotFoundError
from xrouter.providers.base import ModelTarget, Provider
from xrouter.routing.catalog import ModelCatalog
from xrouter.routing.model_id import parse_model_id
from xrouter.routing.routes import RouteTable


class ModelResolver:
    def __init__(
        self,
        providers: Mapping[str, Provider],
        catalog: ModelCatalog,
        routes: Callable[[], RouteTable] | None = None,
    ) -> None:
        self._providers = providers
        self._catalog = catalog
        self._routes = routes

    def resolve(
        self,
        model_id: str,
        kind: str = "chat",
        key_id: str = "",
        owner: str | None = None,
    ) -> tuple[Provider, ModelTarget]:
        """The provider and target for ``model_id``, or ``ModelNotFoundError``.

        A route alias resolves to its first target (in configured order) that is served: the
        single-target answer for callers that do not fall back. Uses only memory: the
        catalogue is refreshed in the background, and a model is refused only when the
        provider's catalogue is known and lacks it.
        """
        route = self._routes().find(model_id, key_id, owner) if self._routes else None
        if route is not None:
            for target in route.targets:
                provider = self._providers.get(target.provider)
                if provider is not None and self._catalog.knows(target, kind) is not False:
                    return provider, target
            raise ModelNotFoundError(model_id, "has no target that serves it")
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
