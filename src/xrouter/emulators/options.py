"""Knobs shared by the GigaChat and YandexGPT emulators, and the error injector they drive."""

from __future__ import annotations

import random
from dataclasses import dataclass

# Statuses for which both emulators know the provider's real error body.
SUPPORTED_ERROR_STATUSES = frozenset({400, 401, 402, 403, 404, 413, 422, 429, 500, 503})


@dataclass(frozen=True, slots=True)
class EmulatorOptions:
    """How an emulator behaves: timing, injected failures and which credentials it accepts."""

    latency_ms: float = 0
    stream_chunks: int = 4
    stream_delay_ms: float = 0
    error_rate: float = 0.0
    error_status: int = 500
    token_ttl_seconds: float = 1800
    seed: int = 0
    # GigaChat: None accepts any well-formed base64 of ``id:secret``.
    authorization_key: str | None = None
    # Yandex: None accepts any non-empty API key.
    api_key: str | None = None
    # Yandex: None accepts any folder (``x-folder-id``, when sent, must still match the URI).
    folder_id: str | None = None

    def __post_init__(self) -> None:
        if self.latency_ms < 0 or self.stream_delay_ms < 0:
            raise ValueError("latency_ms and stream_delay_ms must not be negative")
        if self.stream_chunks < 1:
            raise ValueError("stream_chunks must be at least 1")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError("error_rate must be between 0 and 1")
        if self.error_status not in SUPPORTED_ERROR_STATUSES:
            supported = ", ".join(str(status) for status in sorted(SUPPORTED_ERROR_STATUSES))
            raise ValueError(f"error_status must be one of {supported}")
        if self.token_ttl_seconds <= 0:
            raise ValueError("token_ttl_seconds must be positive")


class ErrorInjector:
    """Decides, reproducibly for a given seed, which API requests get the injected error."""

    __slots__ = ("_random", "_rate")

    def __init__(self, rate: float, seed: int) -> None:
        self._rate = rate
        self._random = random.Random(seed)

    def should_fail(self) -> bool:
        """Draw the next decision; the sequence depends only on the seed and the call order."""
        if self._rate <= 0.0:
            return False
        return self._random.random() < self._rate
