"""JSON log lines, written in batches: soon after they are logged, at once for warnings, and
all of them when the process exits."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from xrouter.logs import FLUSH_CHARACTERS, BatchingStreamHandler, JsonFormatter, LineLogger

NAME = "xrouter.test_logs"


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def logger(stream: io.StringIO) -> Iterator[logging.Logger]:
    handler = BatchingStreamHandler(stream, batched=[NAME], seconds=0.05)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(NAME)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger
    logger.handlers[:] = []
    handler.close()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_in_an_event_loop_lines_are_written_together_shortly_after(
    logger: logging.Logger, stream: io.StringIO
) -> None:
    logger.info("first", extra={"request_id": "r1"})
    logger.info("second", extra={"request_id": "r2"})
    assert stream.getvalue() == ""
    await asyncio.sleep(0.2)
    assert [line["request_id"] for line in lines(stream)] == ["r1", "r2"]
    logger.info("third")
    assert len(lines(stream)) == 2
    await asyncio.sleep(0.2)
    assert [line["message"] for line in lines(stream)] == ["first", "second", "third"]


def test_a_line_logged_after_its_timers_loop_closed_is_not_left_waiting(
    logger: logging.Logger, stream: io.StringIO
) -> None:
    async def log(message: str, wait: float) -> None:
        logger.info(message)
        await asyncio.sleep(wait)

    asyncio.run(log("there", 0))  # the loop closes before its timer runs
    assert stream.getvalue() == ""
    asyncio.run(log("here", 0.2))
    assert [line["message"] for line in lines(stream)] == ["there", "here"]


def test_outside_an_event_loop_lines_are_written_at_once(
    logger: logging.Logger, stream: io.StringIO
) -> None:
    logger.info("now")
    assert [line["message"] for line in lines(stream)] == ["now"]


async def test_a_warning_is_written_at_once_after_the_lines_before_it(
    logger: logging.Logger, stream: io.StringIO
) -> None:
    logger.info("before")
    logger.warning("trouble")
    assert [(line["level"], line["message"]) for line in lines(stream)] == [
        ("info", "before"),
        ("warning", "trouble"),
    ]


async def test_other_loggers_lines_are_written_at_once_after_those_waiting(
    logger: logging.Logger, stream: io.StringIO
) -> None:
    logger.info("request")
    logger.getChild("startup").info("started")
    assert [(line["logger"], line["message"]) for line in lines(stream)] == [
        (NAME, "request"),
        (f"{NAME}.startup", "started"),
    ]


async def test_a_full_buffer_is_written_at_once(stream: io.StringIO) -> None:
    handler = BatchingStreamHandler(stream, seconds=60)
    record = logging.makeLogRecord(
        {"name": "xrouter.access", "msg": "x" * 999, "levelno": logging.INFO}
    )
    count = FLUSH_CHARACTERS // 1000
    for _ in range(count):
        handler.handle(record)
    assert stream.getvalue() == ""
    handler.handle(record)
    handler.handle(record)  # waits for the next batch
    assert stream.getvalue() == ("x" * 999 + "\n") * (count + 1)


async def test_flush_writes_what_waits(logger: logging.Logger, stream: io.StringIO) -> None:
    logger.debug("waiting")
    logger.handlers[0].flush()
    assert [line["message"] for line in lines(stream)] == ["waiting"]


def test_the_formatter_writes_the_extra_fields_in_order_but_private_ones() -> None:
    record = logging.getLogger("xrouter.access").makeRecord(
        "xrouter.access",
        logging.INFO,
        __file__,
        1,
        "request %s",
        ("done",),
        None,
        extra={"request_id": "r1", "_private": 1, "status": 200, "cost_rub": None},
    )
    line = json.loads(JsonFormatter().format(record))
    assert list(line) == ["time", "level", "logger", "message", "request_id", "status", "cost_rub"]
    assert line["message"] == "request done"
    assert line["status"] == 200


FIELDS = {"request_id": "r1", "status": 200, "cost_rub": None, "total_ms": 1.25, "stream": True}


def alone(logger: logging.Logger) -> None:
    """Leave ``logger`` its own handler only: pytest adds its capturing ones to every logger."""
    logger.handlers[:] = [
        handler for handler in logger.handlers if type(handler) is BatchingStreamHandler
    ]


def without_time(line: dict[str, object]) -> dict[str, object]:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(line["time"]))
    return {name: value for name, value in line.items() if name != "time"}


async def test_a_line_logger_writes_the_line_logging_writes(
    logger: logging.Logger, stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_record(*args: object, **kwargs: object) -> None:
        raise AssertionError("a record was made")

    alone(logger)
    with monkeypatch.context() as patched:
        patched.setattr(logging.Logger, "makeRecord", no_record)
        LineLogger(NAME).info("request", dict(FIELDS))
    logger.info("request", extra=dict(FIELDS))
    logger.handlers[0].flush()
    direct, logged = lines(stream)
    assert list(direct) == list(logged)
    assert without_time(direct) == without_time(logged)
    assert str(direct["time"]) <= str(logged["time"])


def test_a_line_logger_keeps_to_the_level(logger: logging.Logger, stream: io.StringIO) -> None:
    alone(logger)
    logger.setLevel(logging.WARNING)
    LineLogger(NAME).info("request", dict(FIELDS))
    logger.handlers[0].flush()
    assert stream.getvalue() == ""


def test_a_line_logger_gives_other_handlers_and_filters_the_record(
    logger: logging.Logger, stream: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    alone(logger)
    logger.addHandler(caplog.handler)
    LineLogger(NAME).info("request", dict(FIELDS))
    [record] = caplog.records
    assert (record.getMessage(), record.request_id) == ("request", "r1")  # type: ignore[attr-defined]
    logger.removeHandler(caplog.handler)
    only_200 = logging.Filter()
    only_200.filter = lambda record: record.status != 500  # type: ignore[attr-defined,method-assign]
    logger.addFilter(only_200)
    try:
        LineLogger(NAME).info("request", {**FIELDS, "status": 500})
    finally:
        logger.removeFilter(only_200)
    logger.handlers[0].flush()
    assert [line["status"] for line in lines(stream)] == [200]
    assert len(caplog.records) == 1


def run(script: str, tmp_path: Path) -> str:
    """``script`` in a fresh interpreter; what it wrote to its standard error."""
    source = textwrap.dedent(script)
    result = subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_lines_waiting_at_exit_are_written(tmp_path: Path) -> None:
    output = run(
        """
        import logging
        from xrouter.logs import configure_logging
        configure_logging("info")
        for number in range(3):
            logging.getLogger("xrouter.access").info("request", extra={"number": number})
        """,
        tmp_path,
    )
    assert [json.loads(line)["number"] for line in output.splitlines()] == [0, 1, 2]


def test_a_forked_child_writes_its_own_lines_only(tmp_path: Path) -> None:
    output = run(
        """
        import asyncio, logging, os
        from xrouter.logs import configure_logging
        configure_logging("info")
        log = logging.getLogger("xrouter.access")

        async def main():
            log.info("parent")  # waits for this loop's timer
            pid = os.fork()
            if pid == 0:
                log.info("child")  # no loop runs in the child: written at once
                os._exit(0)  # no exit flush
            os.waitpid(pid, 0)
            await asyncio.sleep(0.3)

        asyncio.run(main())
        """,
        tmp_path,
    )
    assert sorted(json.loads(line)["message"] for line in output.splitlines()) == [
        "child",
        "parent",
    ]
