"""Embeddings through the gateway with the openai SDK."""

from __future__ import annotations

import base64
import math
from array import array

import httpx
import openai
import pytest


@pytest.mark.parametrize(
    ("model", "size"),
    [
        ("gigachat/Embeddings", 1024),
        ("yandex/text-search-doc", 256),
        ("yandex/text-search-query:latest", 256),
    ],
)
def test_embeddings_in_input_order(client: openai.OpenAI, model: str, size: int) -> None:
    texts = ["Москва — столица России", "Привет, мир", "Москва — столица России"]
    result = client.embeddings.create(model=model, input=texts, encoding_format="float")
    assert result.model == model
    assert [item.index for item in result.data] == [0, 1, 2]
    vectors = [item.embedding for item in result.data]
    assert all(len(vector) == size for vector in vectors)
    assert vectors[0] == vectors[2]  # deterministic
    assert vectors[0] != vectors[1]
    assert math.isclose(math.sqrt(sum(x * x for x in vectors[1])), 1.0, rel_tol=1e-3)
    assert result.usage.prompt_tokens > 0
    assert result.usage.total_tokens == result.usage.prompt_tokens


def test_base64_encoding_matches_floats(http: httpx.Client) -> None:
    body = {"model": "gigachat/Embeddings", "input": "Привет"}
    floats = http.post("/v1/embeddings", json=body).json()["data"][0]["embedding"]
    encoded = http.post("/v1/embeddings", json={**body, "encoding_format": "base64"}).json()
    decoded = array("f", base64.b64decode(encoded["data"][0]["embedding"])).tolist()
    assert decoded == pytest.approx(floats, rel=1e-6)


def test_openai_sdk_default_base64_path(client: openai.OpenAI) -> None:
    # The SDK asks for base64 by default and decodes it itself.
    result = client.embeddings.create(model="gigachat/Embeddings", input="Привет")
    assert len(result.data[0].embedding) == 1024


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "gigachat/Embeddings"}, 400, "input"),
        ({"model": "gigachat/Embeddings", "input": []}, 400, "input"),
        ({"model": "gigachat/Embeddings", "input": [[1, 2, 3]]}, 400, "input"),
        (
            {"model": "gigachat/Embeddings", "input": "x", "encoding_format": "hex"},
            400,
            "encoding_format",
        ),
        ({"model": "gigachat/GigaChat-2", "input": "x"}, 404, "model"),
        ({"model": "yandex/yandexgpt", "input": "x"}, 404, "model"),
    ],
)
def test_invalid_embeddings_requests(
    http: httpx.Client, body: dict[str, object], status: int, param: str
) -> None:
    response = http.post("/v1/embeddings", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param
