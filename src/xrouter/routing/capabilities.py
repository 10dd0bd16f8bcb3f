"""What a target can do, and what a request needs: a fallback never drops a feature silently.

Built-in knowledge covers the models XRouter's providers serve; a route's target may override
any of it (``capabilities:`` in the routes file). Unknown limits are not checked. Providers
still refuse parameters they cannot honour when the request is translated; the executor treats
such a refusal as "this target cannot serve the request" and moves on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from xrouter.gateway.wire import ChatCompletionRequest, ImagePart
from xrouter.providers.base import ModelTarget
from xrouter.routing.routes import CapabilityConfig

# A prompt is counted as at least one token per this many characters: an estimate that stays
# below the real count for Russian and English text, so a target is skipped only when the
# request surely does not fit.
CHARACTERS_PER_TOKEN_AT_MOST = 6


@dataclass(frozen=True, slots=True)
class Capabilities:
    tools: bool = True
    json_mode: bool = True
    images: bool = False
    context_length: int | None = None
    max_output: int | None = None


@dataclass(frozen=True, slots=True)
class Needs:
    """The features one chat request uses."""

    tools: bool = False
    json_mode: bool = False
    images: bool = False
    prompt_tokens: int = 0
    output_tokens: int | None = None


# Neither provider takes images through XRouter yet; both take tools and JSON output.
_GIGACHAT = Capabilities(tools=True, json_mode=True, images=False, context_length=131_072)
_YANDEX = Capabilities(tools=True, json_mode=True, images=False, context_length=32_768)
_BUILT_IN: dict[tuple[str, str], Capabilities] = {
    ("gigachat", "GigaChat"): replace(_GIGACHAT, context_length=32_768),
    ("yandex", "llama"): replace(_YANDEX, context_length=8_192),
    ("yandex", "llama-lite"): replace(_YANDEX, context_length=8_192),
    ("yandex", "qwen3-235b-a22b-fp8"): replace(_YANDEX, context_length=131_072),
    ("yandex", "gpt-oss-120b"): replace(_YANDEX, context_length=131_072),
}
_BY_PROVIDER = {"gigachat": _GIGACHAT, "yandex": _YANDEX}


def capabilities_of(target: ModelTarget, override: CapabilityConfig | None = None) -> Capabilities:
    """The built-in capabilities of ``target`` with a route's overrides applied."""
    known = _BUILT_IN.get((target.provider, target.model)) or _BY_PROVIDER.get(
        target.provider, Capabilities()
    )
    if override is None:
        return known
    changes = {name: value for name, value in override if value is not None}
    return replace(known, **changes)


def needs_of(chat: ChatCompletionRequest) -> Needs:
    characters = 0
    images = False
    for message in chat.messages:
        content = getattr(message, "content", None)
        if isinstance(content, str):
            characters += len(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, ImagePart):
                    images = True
                else:
                    characters += len(part.text)
    json_mode = chat.response_format is not None and chat.response_format.type != "text"
    return Needs(
        tools=bool(chat.tools),
        json_mode=json_mode,
        images=images,
        prompt_tokens=characters // CHARACTERS_PER_TOKEN_AT_MOST,
        output_tokens=chat.output_limit,
    )


def shortfall(capabilities: Capabilities, needs: Needs) -> tuple[str, str] | None:
    """Why the target cannot serve the request, as ``(param, reason)``; None if it can."""
    if needs.tools and not capabilities.tools:
        return "tools", "does not support tools"
    if needs.json_mode and not capabilities.json_mode:
        return "response_format", "does not support JSON mode"
    if needs.images and not capabilities.images:
        return "messages", "does not accept images"
    limit = capabilities.max_output
    if needs.output_tokens is not None and limit is not None and needs.output_tokens > limit:
        return "max_tokens", f"writes at most {limit} tokens ({needs.output_tokens} asked)"
    context = capabilities.context_length
    if context is not None:
        wanted = needs.prompt_tokens + (needs.output_tokens or 0)
        if wanted > context:
            return "messages", (
                f"has a context of {context} tokens; the prompt (at least {needs.prompt_tokens}"
                f" tokens) and max_tokens ({needs.output_tokens or 0}) do not fit"
            )
    return None
