"""The OAuth scopes XRouter grants, with what the consent page says about each."""

from __future__ import annotations

from dataclasses import dataclass

INFERENCE = "inference"
PROFILE = "profile"
KEYS = "keys"
# RFC 6749 §3.3: a request without ``scope`` gets this one.
DEFAULT_SCOPES = frozenset({INFERENCE})


@dataclass(frozen=True, slots=True)
class Scope:
    name: str
    english: str
    russian: str


SCOPES: dict[str, Scope] = {
    INFERENCE: Scope(
        INFERENCE,
        "Call models through the /v1 API on your behalf (usage is counted to your account)",
        "Вызывать модели через /v1 API от вашего имени (расход учитывается на ваш аккаунт)",
    ),
    PROFILE: Scope(PROFILE, "See your email address", "Видеть ваш адрес электронной почты"),
    KEYS: Scope(
        KEYS,
        "Create, change and revoke your API keys, and see their usage",
        "Создавать, менять и отзывать ваши API-ключи и видеть их расход",
    ),
}


class ScopeError(ValueError):
    """A requested scope is unknown or malformed."""


def parse_scopes(value: str | None) -> frozenset[str]:
    """The scopes of a ``scope`` parameter (space-separated), or the defaults when absent."""
    if value is None or not value.strip():
        return DEFAULT_SCOPES
    names = frozenset(value.split(" ")) - {""}
    unknown = sorted(names - SCOPES.keys())
    if unknown:
        raise ScopeError(f"unknown scope '{unknown[0][:40]}'; supported: {' '.join(SCOPES)}")
    return names


def scope_string(scopes: frozenset[str]) -> str:
    return " ".join(sorted(scopes))
