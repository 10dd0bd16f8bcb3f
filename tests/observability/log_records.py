"""Waiting for a request's log records, which the gateway writes from its own thread when the
request ends."""

from __future__ import annotations

import logging
import time

import pytest

ACCESS = "xrouter.access"


def records_named(
    caplog: pytest.LogCaptureFixture, name: str, request_id: str
) -> list[logging.LogRecord]:
    """The records the logger ``name`` wrote for ``request_id`` so far."""
    return [
        r for r in caplog.records if r.name == name and getattr(r, "request_id", None) == request_id
    ]


def access_records(caplog: pytest.LogCaptureFixture, request_id: str) -> list[logging.LogRecord]:
    """The access lines of ``request_id``, once there is one (or after 5 s: none)."""
    deadline = time.monotonic() + 5
    while True:
        found = records_named(caplog, ACCESS, request_id)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.01)
