"""The OpenAI Responses API (``/v1/responses``) over the gateway's one chat pipeline."""
