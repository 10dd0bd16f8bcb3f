"""Stored responses for ``previous_response_id``: in this worker's memory, nowhere else.

A request with ``store`` (the default) keeps its conversation (input and output, without
``instructions``, which OpenAI does not carry over either) under its response id, for the key
that made it. The store is bounded by count and by bytes, least recently used first out, and
an entry lives at most ``ttl`` seconds. Nothing is written to the database, so a follow-up must
reach the same worker: with several workers or instances, send the whole history as ``input``
(as Codex CLI does) instead.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from xrouter.gateway.wire import Message

STORED_RESPONSES = 1000
STORED_BYTES = 64 * 1024 * 1024
STORED_SECONDS = 3600.0
_PROCESS_PREFIX = os.urandom(8).hex()
_SEQUENCE = itertools.count(1)
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(list[Message])


def new_response_id() -> str:
    """A response id unique across workers and restarts, without a syscall per request."""
    return f"resp_{_PROCESS_PREFIX}{next(_SEQUENCE):012x}"


@dataclass(slots=True)
class _Entry:
    key_id: str
    # Encoded, so a stored conversation cannot change under a later request that extends it.
    conversation: bytes
    expires: float


class ResponseStore:
    """An LRU of conversations by response id, bounded by count, bytes and age."""

    def __init__(
        self,
        capacity: int = STORED_RESPONSES,
        max_bytes: int = STORED_BYTES,
        ttl: float = STORED_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._ttl = ttl
        self._clock = clock
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, response_id: str, key_id: str, conversation: list[Message]) -> None:
        encoded = _ENCODER.encode(conversation)
        if len(encoded) > self._max_bytes:
            return
        self._drop(response_id)
        self._entries[response_id] = _Entry(key_id, encoded, self._clock() + self._ttl)
        self._bytes += len(encoded)
        while len(self._entries) > self._capacity or self._bytes > self._max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)

    def get(self, response_id: str, key_id: str) -> list[Message] | None:
        """The conversation stored under ``response_id`` by ``key_id``; None when there is none
        (never stored, evicted, expired, or stored by another key)."""
        entry = self._entries.get(response_id)
        if entry is None or entry.key_id != key_id:
            return None
        if entry.expires <= self._clock():
            self._drop(response_id)
            return None
        self._entries.move_to_end(response_id)
        return _DECODER.decode(entry.conversation)

    def _drop(self, response_id: str) -> None:
        entry = self._entries.pop(response_id, None)
        if entry is not None:
            self._bytes -= len(entry.conversation)
