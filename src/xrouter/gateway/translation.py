"""What the APIs translated to chat requests (Anthropic Messages, OpenAI Responses) share:
pointing an error about the internal chat request back at the field the client sent."""

from __future__ import annotations

import re
from collections.abc import Mapping

from xrouter.errors import GatewayError

_MESSAGE_PARAM = re.compile(r"^messages\[(\d+)\](.*)$")


def relocate(
    error: GatewayError, origins: list[str], renames: Mapping[str, str] | None = None
) -> GatewayError:
    """Rewrite ``error.param`` (a path into the chat request) as a path into the client's body.

    ``origins[i]`` is where chat message ``i`` came from (``'input[3]'``); ``renames`` maps chat
    fields to the client API's (``'stop'`` -> ``'stop_sequences'``). The message names the
    parameter too, so it is rewritten the same way.
    """
    param = error.param
    if param is None:
        return error
    located = param
    if (match := _MESSAGE_PARAM.match(param)) is not None:
        index = int(match[1])
        if index < len(origins):
            located = origins[index] + _suffix(match[2])
    elif renames is not None:
        head, dot, rest = param.partition(".")
        if head in renames:
            located = renames[head] + dot + rest
    if located != param:
        error.message = error.message.replace(f"'{param}'", f"'{located}'")
        error.param = located
    return error


def _suffix(rest: str) -> str:
    # Inside a translated message only the content is the client's own; deeper chat paths
    # (tool_calls[0].function.arguments) have no counterpart, so they are kept as they are.
    return rest if rest.startswith(".content") or not rest else f" ({rest.lstrip('.')})"
