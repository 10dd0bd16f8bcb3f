"""Emulator options validation and reproducible error injection."""

from __future__ import annotations

from typing import Any

import pytest

from xrouter.emulators.options import EmulatorOptions, ErrorInjector


@pytest.mark.parametrize(
    "options",
    [
        {"latency_ms": -1},
        {"stream_delay_ms": -1},
        {"stream_chunks": 0},
        {"error_rate": 1.5},
        {"error_rate": -0.1},
        {"error_status": 418},
        {"token_ttl_seconds": 0},
    ],
)
def test_invalid_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must"):
        EmulatorOptions(**options)


def test_defaults() -> None:
    options = EmulatorOptions()
    assert (options.stream_chunks, options.error_status, options.token_ttl_seconds) == (
        4,
        500,
        1800,
    )
    assert options.authorization_key is options.api_key is options.folder_id is None


def test_injection_depends_only_on_seed_and_rate() -> None:
    def draws(seed: int) -> list[bool]:
        injector = ErrorInjector(0.3, seed)
        return [injector.should_fail() for _ in range(200)]

    assert draws(1) == draws(1)
    assert draws(1) != draws(2)
    assert 30 < sum(draws(1)) < 90
    assert not any(ErrorInjector(0.0, 1).should_fail() for _ in range(100))
    assert all(ErrorInjector(1.0, 1).should_fail() for _ in range(100))
