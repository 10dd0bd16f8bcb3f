"""``POST /v1/responses``.

Runs through the gateway's chat pipeline (``GatewayHandlers.run_chat``): the same key check,
limits, routing and usage records as ``/v1/chat/completions``; errors are OpenAI-shaped, as
the Responses API's are. ``previous_response_id`` continues a conversation kept in this
worker's ``ResponseStore``.
"""

from __future__ import annotations

import time

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from xrouter.errors import GatewayError, InvalidRequestError
from xrouter.gateway.handlers import ChatStream, GatewayHandlers
from xrouter.gateway.http import decode_json, json_response
from xrouter.gateway.responses.store import ResponseStore, new_response_id
from xrouter.gateway.responses.stream import ResponsesStream
from xrouter.gateway.responses.translate import (
    PARAM_NAMES,
    Translation,
    assistant_message,
    chat_request,
    incomplete_details,
    output_items,
    response_usage,
)
from xrouter.gateway.responses.wire import ResponseObject, ResponsesRequest
from xrouter.gateway.translation import relocate
from xrouter.gateway.wire import ChatCompletionRequest, Message
from xrouter.keys.cache import ActiveKey

_REQUEST = msgspec.json.Decoder(ResponsesRequest)


class ResponsesHandlers:
    def __init__(self, gateway: GatewayHandlers, store: ResponseStore | None = None) -> None:
        self.gateway = gateway
        self.store = store if store is not None else ResponseStore()

    async def create(self, request: Request) -> Response:
        parsed: list[tuple[ResponsesRequest, Translation, ActiveKey]] = []

        def parse(raw: bytes, key: ActiveKey) -> ChatCompletionRequest:
            body = decode_json(raw, _REQUEST)
            translation = chat_request(body, self._history(body, key))
            parsed.append((body, translation, key))
            return translation.chat

        try:
            result = await self.gateway.run_chat(request, parse)
        except GatewayError as error:
            raise relocate(error, parsed[0][1].origins if parsed else [], PARAM_NAMES) from None
        body, translation, key = parsed[0]
        response = _skeleton(body, new_response_id())
        message_id = f"msg_{result.request_id}"

        def keep(done: ResponseObject) -> None:
            if body.store:
                conversation = [*translation.conversation, assistant_message(done.output)]
                self.store.put(done.id, key.id, conversation)

        if isinstance(result, ChatStream):
            stream = ResponsesStream(response, message_id, keep)
            return result.response(stream.events(result.chunks()))
        completion = result.completion
        finish_reason = completion.choices[0].finish_reason
        details = incomplete_details(finish_reason)
        response.model = completion.model
        response.output = output_items(completion, message_id)
        response.usage = response_usage(completion.usage)
        response.status = "incomplete" if details else "completed"
        response.incomplete_details = details
        keep(response)
        return json_response(response, headers=result.headers)

    def _history(self, body: ResponsesRequest, key: ActiveKey) -> list[Message]:
        if body.previous_response_id is None:
            return []
        history = self.store.get(body.previous_response_id, key.id)
        if history is None:
            raise InvalidRequestError(
                f"Previous response with id '{body.previous_response_id}' not found. Responses "
                "are kept in the memory of the gateway worker that made them, for an hour; send "
                "the whole conversation as 'input' instead.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        return history


def _skeleton(body: ResponsesRequest, response_id: str) -> ResponseObject:
    """The response as it is before any output: what ``response.created`` shows."""
    return ResponseObject(
        id=response_id,
        created_at=int(time.time()),
        model=body.model,
        status="in_progress",
        output=[],
        instructions=body.instructions,
        max_output_tokens=body.max_output_tokens,
        parallel_tool_calls=body.parallel_tool_calls is not False,
        previous_response_id=body.previous_response_id,
        temperature=body.temperature,
        top_p=body.top_p,
        tool_choice=body.tool_choice if body.tool_choice is not None else "auto",
        tools=body.tools or [],
        store=body.store,
        metadata=body.metadata or {},
    )
