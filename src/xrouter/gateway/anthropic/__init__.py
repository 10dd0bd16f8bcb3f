"""The Anthropic Messages API (``/v1/messages``) over the gateway's one chat pipeline."""
