"""Model ids as clients write them: ``<provider>/<model>[:<version>]``."""

from __future__ import annotations

import re

from xrouter.errors import ModelNotFoundError
from xrouter.providers.base import ModelTarget

_MODEL_ID = re.compile(
    r"^(?P<provider>[a-z][a-z0-9_-]*)/(?P<model>[A-Za-z0-9][A-Za-z0-9._-]*)"
    r"(?::(?P<version>[A-Za-z0-9][A-Za-z0-9._-]*))?$"
)


def parse_model_id(model_id: str) -> ModelTarget:
    """Split a model id; an id that is not of the form ``provider/model[:version]`` is unknown."""
    match = _MODEL_ID.match(model_id)
    if match is None:
        raise ModelNotFoundError(
            model_id, "does not exist: model ids look like 'gigachat/GigaChat-2-Max'"
        )
    return ModelTarget(match["provider"], match["model"], match["version"])
