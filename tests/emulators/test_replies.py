"""Deterministic replies, tokens, embeddings and function arguments."""

from __future__ import annotations

import math

from xrouter.emulators import replies


def test_reply_is_deterministic_and_quotes_a_truncated_cyrillic_piece() -> None:
    message = "Расскажи, пожалуйста, очень подробно о том, как   устроен\nБайкал и его экосистема"
    first = replies.reply_text(["Будь краток", message], message)
    assert first == replies.reply_text(["Будь краток", message], message)
    assert "«Расскажи, пожалуйста, очень подробно о…»" in first
    assert replies.quote("коротко") == "коротко"
    assert replies.quote("a  b\n c") == "a b c"
    assert replies.quote("Достопримечательности", 8) == "Достопри…"


def test_different_conversations_can_get_different_wording() -> None:
    texts = {replies.reply_text([str(n)], "привет") for n in range(20)}
    assert len(texts) > 1


def test_tokens_count_and_tokenize_agree() -> None:
    text = "Привет, мир! Достопримечательности"
    pieces = replies.tokenize(text)
    assert pieces == ["▁Привет", ",", "▁мир", "!", "▁Достоп", "римеча", "тельно", "сти"]
    assert replies.count_tokens(text) == len(pieces) == 8
    assert replies.count_tokens("") == 0
    assert replies.token_id("▁мир") == replies.token_id("▁мир")


def test_truncate_to_tokens_keeps_a_prefix_with_that_many_tokens() -> None:
    text = "Один, два, три и четыре."
    for limit in range(replies.count_tokens(text) + 2):
        prefix = replies.truncate_to_tokens(text, limit)
        assert text.startswith(prefix)
        assert replies.count_tokens(prefix) == min(limit, replies.count_tokens(text))


def test_split_chunks_rejoins_and_respects_the_count() -> None:
    text = "Съешь же ещё этих мягких французских булок"
    for count in (1, 2, 4, 7):
        pieces = replies.split_chunks(text, count)
        assert len(pieces) == count
        assert all(pieces)
        assert "".join(pieces) == text
    assert replies.split_chunks("ab", 5) == ["a", "b"]
    assert replies.split_chunks("", 3) == [""]


def test_embeddings_are_deterministic_unit_vectors() -> None:
    vector = replies.embedding_vector("текст", 1024, "Embeddings")
    assert len(vector) == 1024
    assert math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-12)
    assert vector == replies.embedding_vector("текст", 1024, "Embeddings")
    assert vector != replies.embedding_vector("текст", 1024, "Embeddings-2")
    assert vector != replies.embedding_vector("другой", 1024, "Embeddings")


def test_arguments_follow_the_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer", "minimum": 3},
            "ratio": {"type": "number"},
            "unit": {"type": "string", "enum": ["C", "F"]},
            "detailed": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "where": {"type": "object", "properties": {"lat": {"type": "number", "minimum": -90}}},
            "nullable": {"type": ["null", "integer"]},
            "fixed": {"type": "string", "default": "x"},
        },
    }
    assert replies.arguments_from_schema(schema, "Погода в Москве") == {
        "city": "Погода в Москве",
        "days": 3,
        "ratio": 1.5,
        "unit": "C",
        "detailed": True,
        "tags": ["Погода в Москве"],
        "where": {"lat": -90.0},
        "nullable": 1,
        "fixed": "x",
    }
    assert replies.arguments_from_schema(None, "x") == {}
    assert replies.arguments_from_schema({"type": "object"}, "x") == {}


def test_state_id_is_a_stable_uuid4() -> None:
    assert replies.state_id(["a"]) == replies.state_id(["a"])
    assert replies.state_id(["a"]) != replies.state_id(["b"])
    assert replies.state_id(["a"])[14] == "4"
