"""Helpers that several providers need to read OpenAI requests."""

from __future__ import annotations

from xrouter.errors import InvalidRequestError
from xrouter.gateway.wire import ChatCompletionRequest, Content, TextPart


def text_of(content: Content | None, param: str, provider: str) -> str:
    """The text of a message; image parts are refused until a provider adapter maps them."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for index, part in enumerate(content):
        if not isinstance(part, TextPart):
            raise InvalidRequestError(
                f"{provider} does not accept image content through this gateway yet.",
                param=f"{param}[{index}]",
                code="unsupported_content",
            )
        texts.append(part.text)
    return "".join(texts)


def refuse_unsupported(
    request: ChatCompletionRequest, provider: str, fields: tuple[str, ...]
) -> None:
    """Raise a 400 naming the first field in ``fields`` that the request sets to a non-default."""
    for field in fields:
        value = getattr(request, field)
        if value is None or value is False:
            continue
        if field == "n" and value == 1:
            continue
        if field in {"presence_penalty", "frequency_penalty"} and value == 0:
            continue
        raise InvalidRequestError(
            f"{provider} does not support the '{field}' parameter.",
            param=field,
            code="unsupported_parameter",
        )
