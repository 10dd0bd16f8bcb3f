"""Which packages the serving process imports before it serves, seen in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

# What `python -m xrouter serve` imports before it starts serving: the command line with every
# subcommand's parser, the server, the app it builds and the schema check.
SERVING_MODULES = ("xrouter.cli", "xrouter.server", "xrouter.app", "xrouter.storage.schema_version")


def imported_of(packages: set[str]) -> list[str]:
    """The ``packages`` that importing the serving modules brings in (sorted)."""
    probe = (
        f"import json, sys, {', '.join(SERVING_MODULES)};"
        f"print(json.dumps(sorted({{name.split('.')[0] for name in sys.modules}} & {packages!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return list(json.loads(result.stdout))


def loaded_of(modules: set[str]) -> list[str]:
    """The ``modules`` (a package stands for its submodules too) that importing the serving
    modules brings in (sorted): finer than ``imported_of`` where another package imports only
    the top of one, as redis does with ``cryptography``."""
    probe = (
        f"import json, sys, {', '.join(SERVING_MODULES)};"
        f"wanted = {modules!r};"
        "print(json.dumps(sorted({w for w in wanted for name in sys.modules "
        "if name == w or name.startswith(w + '.')})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return list(json.loads(result.stdout))
