"""Running ``xrouter keys`` in-process against a test database."""

from __future__ import annotations

import argparse

from xrouter.keys import cli
from xrouter.settings import Settings

PEPPER = "cli-test-pepper-0123456789abcdef"


def run_keys_cli(settings: Settings, *argv: str) -> int:
    """The exit status of ``xrouter keys ARGV``."""
    parser = argparse.ArgumentParser(prog="xrouter keys")
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv), settings)
