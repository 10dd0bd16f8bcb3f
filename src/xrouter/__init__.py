"""XRouter: a self-hosted OpenAI-compatible gateway for GigaChat and YandexGPT."""

__version__ = "0.1.0"
