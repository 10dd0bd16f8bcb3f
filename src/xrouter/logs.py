"""Structured logs: one JSON object per line, with the request id when there is one. The
per-request lines are written in batches, a fraction of a second after they are logged."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import weakref
from collections.abc import Collection
from itertools import islice
from typing import Any, TextIO

import msgspec

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
# A record's own attributes come first in its ``__dict__``, the caller's ``extra`` after them.
_FIRST_EXTRA = len(logging.makeLogRecord({}).__dict__)
# Lines wait at most this long, or until this many characters are waiting, to be written
# together: one write per batch instead of a write and a flush per line (one per request).
FLUSH_SECONDS = 0.1
FLUSH_CHARACTERS = 64 * 1024
# The loggers that write a line per request.
BATCHED_LOGGERS = ("xrouter.access", "xrouter.content")
# Values msgspec cannot encode are written as their ``str()``, as ``json.dumps(default=str)``.
_ENCODER = msgspec.json.Encoder(enc_hook=str)


class JsonFormatter(logging.Formatter):
    """One JSON object per record. The access log writes a line per request, so the
    timestamp's seconds are formatted once per second and msgspec encodes the object."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname.lower()
        entry = self._head(record.created, level, record.name, record.getMessage())
        for name, value in islice(record.__dict__.items(), _FIRST_EXTRA, None):
            if name[:1] != "_" and name not in _STANDARD:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encode(entry)

    def format_fields(
        self, created: float, level: str, name: str, message: str, fields: dict[str, Any]
    ) -> str:
        """The line ``format`` writes for a record of ``name``'s ``logger.log(level, message,
        extra=fields)`` made at ``created`` (``level`` as written: "info"), without the record."""
        entry = self._head(created, level, name, message)
        entry.update(fields)
        return _encode(entry)

    def _head(self, created: float, level: str, name: str, message: str) -> dict[str, Any]:
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        # The milliseconds as ``LogRecord.msecs`` computes them.
        milliseconds = int((created - second) * 1000)
        return {
            "time": f"{self._second_text}.{milliseconds:03d}Z",
            "level": level,
            "logger": name,
            "message": message,
        }


def _encode(entry: dict[str, Any]) -> str:
    try:
        return _ENCODER.encode(entry).decode()
    except (TypeError, ValueError, OverflowError):
        # Keys that are not strings, integers too large for JSON numbers: the slow way.
        return json.dumps(entry, ensure_ascii=False, default=str)


class BatchingStreamHandler(logging.StreamHandler[TextIO]):
    """Writes the lines of the per-request loggers (``batched``) in batches: ``seconds`` after
    the first one waiting (a timer of the event loop that logged it), once
    ``FLUSH_CHARACTERS`` are waiting, and on ``flush()``, which ``logging.shutdown`` calls at
    exit. Any other line (startup, shutdown, a warning or worse from any logger), and any line
    logged outside an event loop, is written at once, after those waiting."""

    def __init__(
        self,
        stream: TextIO,
        batched: Collection[str] = BATCHED_LOGGERS,
        seconds: float = FLUSH_SECONDS,
    ) -> None:
        super().__init__(stream)
        self._batched = frozenset(batched)
        self._seconds = seconds
        self._lines: list[str] = []
        self._waiting = 0
        # The loop whose timer will write the lines waiting; None: no timer is set.
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        _BATCHING.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        # Called with the handler's lock held (``Handler.handle``), as ``flush`` takes it.
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._add(line, record.name, record.levelno)

    def emit_fields(self, name: str, message: str, fields: dict[str, Any]) -> None:
        """Write the line of an INFO record of ``logging.getLogger(name).info(message,
        extra=fields)`` without making the record; for a handler with a ``JsonFormatter``."""
        created = time.time()
        formatter: JsonFormatter = self.formatter  # type: ignore[assignment]  # the caller's check
        with self.lock:  # type: ignore[union-attr]  # created in Handler.__init__
            try:
                line = formatter.format_fields(created, "info", name, message, fields)
            except Exception:
                self.handleError(logging.makeLogRecord({"name": name, "msg": message, **fields}))
                return
            self._add(line, name, logging.INFO)

    def _add(self, line: str, name: str, level: int) -> None:
        self._lines.append(line)
        self._waiting += len(line)
        if (
            name not in self._batched
            or level >= logging.WARNING
            or self._waiting >= FLUSH_CHARACTERS
        ):
            self.flush()
        elif self._timer_loop is None or self._timer_loop.is_closed():
            self._set_timer()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # created in Handler.__init__
            if self._lines:
                lines, self._lines, self._waiting = self._lines, [], 0
                try:
                    self.stream.write("\n".join(lines) + self.terminator)
                except Exception:
                    self.handleError(logging.makeLogRecord({"msg": "log lines lost"}))
            super().flush()

    def close(self) -> None:
        self.flush()
        super().close()

    def _set_timer(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop in this thread: nothing would write them later
            self._timer_loop = None
            self.flush()
            return
        self._timer_loop = loop
        loop.call_later(self._seconds, self._write_due)

    def _write_due(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._timer_loop = None
            self.flush()

    def _forked(self) -> None:
        # The lines waiting are the parent's to write, and its timer does not run here.
        self._lines, self._waiting = [], 0
        self._timer_loop = None


_BATCHING: weakref.WeakSet[BatchingStreamHandler] = weakref.WeakSet()


class LineLogger:
    """A logger's ``info(message, extra=fields)`` for a line per request. When the one handler
    its records would reach is a ``BatchingStreamHandler`` formatting them with a
    ``JsonFormatter`` (as ``configure_logging`` sets it up), the line is written straight
    from ``fields``: making a ``LogRecord`` and passing it through ``logging`` costs more
    than the request's own metrics. Any other setup (another handler or formatter, a filter,
    a record factory, a test capturing records) gets the record, as ``Logger.info`` makes it.

    ``fields`` must be plain names (no leading ``_``, none of ``LogRecord``'s attributes),
    as ``extra`` must be for ``logging`` to accept them and the formatter to write them."""

    __slots__ = ("logger",)

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)

    def info(self, message: str, fields: dict[str, Any]) -> None:
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        handler = _direct_handler(logger)
        if handler is None:
            logger.info(message, extra=fields)
        else:
            handler.emit_fields(logger.name, message, fields)


def _direct_handler(logger: logging.Logger) -> BatchingStreamHandler | None:
    """The handler an INFO record of ``logger`` would reach if it is the only one, does not
    filter it and formats it with a ``JsonFormatter``; else None."""
    if logger.filters or logging.getLogRecordFactory() is not logging.LogRecord:
        return None
    found: BatchingStreamHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if found is not None or type(handler) is not BatchingStreamHandler:
                return None
            found = handler
        current = current.parent if current.propagate else None
    if (
        found is None
        or found.level > logging.INFO
        or found.filters
        or type(found.formatter) is not JsonFormatter
    ):
        return None
    return found


def _after_fork_in_child() -> None:
    for handler in _BATCHING:
        handler._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


def configure_logging(level: str) -> None:
    handler = BatchingStreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for replaced in root.handlers:
        replaced.flush()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The formatter writes none of these; gathering them costs every record a few lookups.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # Nor the caller's file and line, which logging finds by walking the stack for each record
    # (the documented switch for that is this module attribute).
    logging._srcfile = None
    # uvicorn's access log duplicates the gateway's own request logging.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
