"""``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

Messages run through the gateway's chat pipeline (``GatewayHandlers.run_chat``): the same key
check, limits, routing and usage records as ``/v1/chat/completions``. Every error is rendered
in Anthropic's shape, whatever step raised it.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from xrouter.auth.gateway_auth import authenticate
from xrouter.errors import GatewayError
from xrouter.gateway.anthropic.errors import error_response
from xrouter.gateway.anthropic.stream import AnthropicStream
from xrouter.gateway.anthropic.translate import (
    PARAM_NAMES,
    Translation,
    chat_request,
    message_from,
)
from xrouter.gateway.anthropic.wire import ENCODER, CountTokensRequest, MessagesRequest, TokenCount
from xrouter.gateway.handlers import ChatStream, GatewayHandlers, body_limits
from xrouter.gateway.http import JSON_MEDIA_TYPE, decode_json, read_body
from xrouter.gateway.translation import relocate
from xrouter.gateway.wire import ChatCompletionRequest
from xrouter.keys.cache import ActiveKey

_MESSAGES = msgspec.json.Decoder(MessagesRequest)
_COUNT = msgspec.json.Decoder(CountTokensRequest)


class AnthropicHandlers:
    def __init__(self, gateway: GatewayHandlers) -> None:
        self.gateway = gateway

    async def messages(self, request: Request) -> Response:
        translations: list[Translation] = []

        def parse(raw: bytes, key: ActiveKey) -> ChatCompletionRequest:
            translations.append(chat_request(decode_json(raw, _MESSAGES)))
            return translations[0].chat

        try:
            result = await self.gateway.run_chat(request, parse)
            message_id = f"msg_{result.request_id}"
            if isinstance(result, ChatStream):
                stream = AnthropicStream(message_id, translations[0].chat.model)
                return result.response(stream.events(result.chunks()))
            message = message_from(result.completion, message_id, result.completion.model)
            return Response(ENCODER.encode(message), 200, result.headers, JSON_MEDIA_TYPE)
        except GatewayError as error:
            origins = translations[0].origins if translations else []
            return error_response(relocate(error, origins, PARAM_NAMES))

    async def count_tokens(self, request: Request) -> Response:
        """The prompt's tokens by the provider's own tokenizer. Counting is free, as at
        Anthropic: it is neither charged to rate limits nor recorded as usage."""
        runtime = self.gateway.runtime
        translation: Translation | None = None
        try:
            key = authenticate(request, runtime.keys, runtime.access_tokens)
            raw = await read_body(request, *body_limits(runtime))
            translation = chat_request(decode_json(raw, _COUNT))
            # Counted where the request would be served: the route's first target.
            planned = runtime.routing.planner.plan_chat(translation.chat, key).primary
            provider, target = planned.provider, planned.target
            runtime.key_policy.admit(key, target)
            # Not recorded as usage, so the request metrics take the target from here.
            state = request.scope.setdefault("state", {})
            state.update(model=target.public_id, provider=target.provider)
            upstream = provider.count_tokens_request(translation.chat, target)
            body = await runtime.transport.send(provider, upstream)
            count = TokenCount(provider.count_tokens_reply(body, target))
            return Response(ENCODER.encode(count), 200, None, JSON_MEDIA_TYPE)
        except GatewayError as error:
            origins = translation.origins if translation else []
            return error_response(relocate(error, origins, PARAM_NAMES))
