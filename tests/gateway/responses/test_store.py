"""The in-memory store behind previous_response_id: bounds, expiry and key scoping."""

from __future__ import annotations

from xrouter.gateway.responses.store import ResponseStore, new_response_id
from xrouter.gateway.wire import AssistantMessage, Message, UserMessage


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def conversation(text: str) -> list[Message]:
    return [UserMessage(text), AssistantMessage(content=f"re: {text}")]


def test_a_stored_conversation_comes_back_for_its_key_only() -> None:
    store = ResponseStore()
    store.put("resp_1", "key_a", conversation("привет"))
    assert store.get("resp_1", "key_a") == conversation("привет")
    assert store.get("resp_1", "key_b") is None
    assert store.get("resp_2", "key_a") is None


def test_the_stored_copy_cannot_be_changed_by_its_reader() -> None:
    store = ResponseStore()
    store.put("resp_1", "key", conversation("a"))
    first = store.get("resp_1", "key")
    assert first is not None
    first.append(UserMessage("more"))
    assert store.get("resp_1", "key") == conversation("a")


def test_least_recently_used_leave_first_when_full() -> None:
    store = ResponseStore(capacity=2)
    store.put("resp_1", "key", conversation("1"))
    store.put("resp_2", "key", conversation("2"))
    assert store.get("resp_1", "key") is not None  # now the most recently used
    store.put("resp_3", "key", conversation("3"))
    assert store.get("resp_2", "key") is None
    assert store.get("resp_1", "key") is not None
    assert len(store) == 2


def test_bytes_are_bounded() -> None:
    size = len(b'[{"role":"user","content":"' + b"x" * 100)
    store = ResponseStore(max_bytes=3 * size)
    for number in range(5):
        store.put(f"resp_{number}", "key", [UserMessage("x" * 100)])
    assert len(store) < 5
    assert store.get("resp_4", "key") is not None
    huge = ResponseStore(max_bytes=10)
    huge.put("resp_1", "key", conversation("longer than ten bytes"))
    assert len(huge) == 0


def test_entries_expire() -> None:
    clock = Clock()
    store = ResponseStore(ttl=60, clock=clock)
    store.put("resp_1", "key", conversation("a"))
    clock.now = 59
    assert store.get("resp_1", "key") is not None
    clock.now = 60
    assert store.get("resp_1", "key") is None
    assert len(store) == 0


def test_response_ids_are_unique() -> None:
    ids = {new_response_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(response_id.startswith("resp_") for response_id in ids)
