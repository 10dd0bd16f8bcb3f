"""What a request cost, in roubles, from a price table per model.

Prices are roubles per million tokens, separately for the prompt and the completion. A table
entry names a model exactly (``gigachat/GigaChat-2-Max``, ``yandex/yandexgpt:rc``) or by a
pattern (``yandex/*``, ``gigachat/Embeddings*``). The most specific entry wins: the exact id
with its version, then the id without the version, then the longest matching pattern.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from fnmatch import fnmatchcase
from pathlib import Path

import yaml
from pydantic import TypeAdapter, ValidationError

from xrouter.settings import ConfigurationError, ModelPrice, Settings

TOKENS_PER_PRICE_UNIT = 1_000_000
_CACHE_SIZE = 4096

# Approximate public list prices (roubles per million tokens, VAT included). They make budgets
# and cost charts meaningful out of the box; set XROUTER_MODEL_PRICES(_FILE) to your contract.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "gigachat/GigaChat-2-Max": ModelPrice(prompt=1950, completion=1950),
    "gigachat/GigaChat-Max": ModelPrice(prompt=1950, completion=1950),
    "gigachat/GigaChat-2-Pro": ModelPrice(prompt=1500, completion=1500),
    "gigachat/GigaChat-Pro": ModelPrice(prompt=1500, completion=1500),
    "gigachat/GigaChat-2": ModelPrice(prompt=200, completion=200),
    "gigachat/GigaChat": ModelPrice(prompt=200, completion=200),
    "gigachat/Embeddings*": ModelPrice(prompt=40),
    "yandex/yandexgpt": ModelPrice(prompt=1200, completion=1200),
    "yandex/yandexgpt-32k": ModelPrice(prompt=1200, completion=1200),
    "yandex/yandexgpt-lite": ModelPrice(prompt=200, completion=200),
    "yandex/llama": ModelPrice(prompt=1200, completion=1200),
    "yandex/llama-lite": ModelPrice(prompt=200, completion=200),
    "yandex/qwen3-235b-a22b-fp8": ModelPrice(prompt=500, completion=500),
    "yandex/gpt-oss-120b": ModelPrice(prompt=300, completion=300),
    "yandex/text-search-*": ModelPrice(prompt=10),
}

_TABLE = TypeAdapter(dict[str, ModelPrice])


class PriceTable:
    """Looks up a model's price and computes a request's cost (no I/O)."""

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self._exact = {name: price for name, price in prices.items() if not _is_pattern(name)}
        # Longest first: "gigachat/GigaChat-2*" is more specific than "gigachat/*".
        self._patterns = sorted(
            ((name, price) for name, price in prices.items() if _is_pattern(name)),
            key=lambda item: len(item[0]),
            reverse=True,
        )
        self._cache: dict[str, ModelPrice | None] = {}

    def price(self, model_id: str) -> ModelPrice | None:
        """The price of ``model_id`` (``provider/model[:version]``), or None if it has none."""
        if model_id in self._cache:
            return self._cache[model_id]
        found = self._exact.get(model_id)
        if found is None:
            found = self._exact.get(model_id.split(":", 1)[0])
        if found is None:
            found = next(
                (price for name, price in self._patterns if fnmatchcase(model_id, name)), None
            )
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[model_id] = found
        return found

    def cost(self, model_id: str, prompt_tokens: int, completion_tokens: int) -> float:
        """What the tokens cost in roubles; 0 for a model without a price."""
        price = self.price(model_id)
        if price is None:
            return 0.0
        units = prompt_tokens * price.prompt + completion_tokens * price.completion
        return units / TOKENS_PER_PRICE_UNIT


def _is_pattern(name: str) -> bool:
    return any(character in name for character in "*?[")


def load_prices(settings: Settings) -> PriceTable:
    """The built-in table (or ``model_prices_file``) with ``model_prices`` on top."""
    prices = dict(DEFAULT_PRICES)
    if settings.model_prices_file is not None:
        prices = read_price_file(settings.model_prices_file)
    prices.update(settings.model_prices)
    return PriceTable(prices)


def read_price_file(path: Path) -> dict[str, ModelPrice]:
    """A YAML or JSON mapping ``{model: {prompt, completion}}``; ``ConfigurationError`` if not."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        return _TABLE.validate_python(data or {})
    except (OSError, ValueError, yaml.YAMLError) as error:
        first_line = (str(error).splitlines() or [type(error).__name__])[0]
        if isinstance(error, ValidationError):
            detail = error.errors()[0]
            where = ".".join(str(part) for part in detail["loc"])
            first_line = f"{where}: {detail['msg']}"
        raise ConfigurationError(f"XROUTER_MODEL_PRICES_FILE: {path}: {first_line}") from None
