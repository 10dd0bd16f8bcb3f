"""Deterministic replies, tokens, embeddings and function arguments shared by both emulators.

The same input always gives the same output, so tests can compare a streamed reply with the
non-streamed one and a gateway can be checked end to end without a real model.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
import zlib
from array import array
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

QUOTE_LIMIT = 40
# Long words are cut into pieces of this many characters, roughly like a BPE vocabulary would.
TOKEN_PIECE_CHARS = 6
_WORD_OR_MARK = re.compile(r"\w+|[^\w\s]")
_SPACES = re.compile(r"\s+")
_SCHEMA_DEPTH_LIMIT = 6

_REPLY_TEMPLATES = (
    "Вы написали: «{quote}». Это детерминированный ответ эмулятора.",
    "Получено сообщение «{quote}». Эмулятор отвечает одинаково на одинаковые запросы.",
    "Эмулятор прочитал «{quote}» и возвращает этот проверочный ответ.",
)
_FUNCTION_RESULT_TEMPLATE = "Функция {name} вернула «{quote}». Это итоговый ответ эмулятора."


def quote(text: str, limit: int = QUOTE_LIMIT) -> str:
    """Collapse whitespace and cut ``text`` to ``limit`` characters, marking a cut with "…"."""
    flat = _SPACES.sub(" ", text).strip()
    if len(flat) <= limit:
        return flat
    cut = flat[:limit]
    # Prefer ending on a word boundary, unless that would throw away most of the quote.
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def _digest(parts: Sequence[str]) -> bytes:
    hasher = hashlib.blake2b(digest_size=16)
    for part in parts:
        hasher.update(part.encode())
        hasher.update(b"\x00")
    return hasher.digest()


def reply_text(conversation: Sequence[str], last_user_text: str) -> str:
    """The assistant's reply to a conversation, quoting a short piece of the last user message."""
    variant = _digest(conversation)[0] % len(_REPLY_TEMPLATES)
    return _REPLY_TEMPLATES[variant].format(quote=quote(last_user_text))


def function_result_reply(name: str, result: str) -> str:
    """The assistant's reply after a function (tool) returned ``result``."""
    return _FUNCTION_RESULT_TEMPLATE.format(name=name or "function", quote=quote(result))


def state_id(conversation: Sequence[str]) -> str:
    """A uuid4-shaped id derived from the conversation (GigaChat's ``functions_state_id``)."""
    return str(uuid.UUID(bytes=_digest(conversation), version=4))


def _token_spans(text: str) -> Iterator[tuple[int, int]]:
    for match in _WORD_OR_MARK.finditer(text):
        start, end = match.span()
        for piece_start in range(start, end, TOKEN_PIECE_CHARS):
            yield piece_start, min(piece_start + TOKEN_PIECE_CHARS, end)


def count_tokens(text: str) -> int:
    """Number of tokens in ``text``: words and punctuation marks, long words count per piece."""
    return sum(
        -(-(match.end() - match.start()) // TOKEN_PIECE_CHARS)
        for match in _WORD_OR_MARK.finditer(text)
    )


def tokenize(text: str) -> list[str]:
    """The tokens behind ``count_tokens``; like SentencePiece, "▁" marks a preceding space."""
    pieces = []
    for start, end in _token_spans(text):
        after_space = start == 0 or text[start - 1].isspace()
        pieces.append(("▁" if after_space else "") + text[start:end])
    return pieces


def token_id(piece: str) -> int:
    """A stable vocabulary id for a token piece."""
    return zlib.crc32(piece.encode()) % 120_000


def truncate_to_tokens(text: str, max_tokens: int) -> str:
    """The longest prefix of ``text`` holding at most ``max_tokens`` tokens."""
    if max_tokens <= 0:
        return ""
    end = 0
    for index, (_, span_end) in enumerate(_token_spans(text)):
        if index == max_tokens:
            return text[:end]
        end = span_end
    return text


def split_chunks(text: str, count: int) -> list[str]:
    """Cut ``text`` into ``count`` nearly equal non-empty pieces (fewer if it is shorter)."""
    count = max(1, min(count, len(text)))
    size = len(text)
    return [text[index * size // count : (index + 1) * size // count] for index in range(count)]


@lru_cache(maxsize=4096)
def _embedding(text: str, dimensions: int, namespace: str) -> tuple[float, ...]:
    raw = hashlib.shake_256(f"{namespace}\x00{text}".encode()).digest(dimensions * 2)
    values = array("H", raw)
    centred = [value - 32767.5 for value in values]
    norm = math.sqrt(sum(value * value for value in centred)) or 1.0
    return tuple(value / norm for value in centred)


def embedding_vector(text: str, dimensions: int, namespace: str = "") -> list[float]:
    """A unit-length vector seeded by a hash of ``text`` (and ``namespace``, e.g. the model)."""
    return list(_embedding(text, dimensions, namespace))


def arguments_from_schema(schema: object, hint: str) -> dict[str, Any]:
    """Function-call arguments built from a JSON schema: every property gets a plausible value.

    Strings get a short quote of ``hint`` (the user's request), enums their first value, numbers
    their minimum or 1, so the same schema and request always produce the same call.
    """
    value = _value_for(schema, hint, 0)
    return value if isinstance(value, dict) else {}


def _value_for(schema: object, hint: str, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > _SCHEMA_DEPTH_LIMIT:
        return quote(hint, 24)
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((item for item in kind if item != "null"), "string")
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        return {name: _value_for(sub, hint, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        return [_value_for(schema.get("items"), hint, depth + 1)]
    if kind == "integer":
        minimum = schema.get("minimum")
        return int(minimum) if isinstance(minimum, int | float) else 1
    if kind == "number":
        minimum = schema.get("minimum")
        return float(minimum) if isinstance(minimum, int | float) else 1.5
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return quote(hint, 24)
