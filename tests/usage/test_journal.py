"""The usage journal: frames and torn tails, rotation, deletion after commit, adoption of the
segments of dead processes, racing adopters, and the recorder replaying what a closed or dead
process left, on SQLite and PostgreSQL (real processes: test_journal_processes.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.usage.test_recorder import _event
from xrouter.settings import Settings
from xrouter.storage.database import create_engine, session_factory
from xrouter.storage.models import UsageRecord, UsageRollup, utc_now
from xrouter.usage.journal import (
    FRAME,
    MAGIC,
    UsageJournal,
    database_scope,
    journal_directory,
    read_frames,
    usage_journal,
)
from xrouter.usage.recorder import UsageRecorder

SCOPE = "testscope000"
UNREACHABLE_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:1/none"
CHAT = {"model": "gigachat/GigaChat-2-Max", "messages": [{"role": "user", "content": "Hi"}]}


def _journal(directory: Path, **options: float) -> UsageJournal:
    journal = UsageJournal(directory, SCOPE, **options)  # type: ignore[arg-type]
    journal.open()
    return journal


def _die(journal: UsageJournal) -> None:
    """What a SIGKILL does to a journal: its files stay, its locks go."""
    for segment in journal.held():
        os.close(segment.fd)


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("usage-*.journal"))


def _frame(payload: bytes) -> bytes:
    return FRAME.pack(len(payload), zlib.crc32(payload)) + payload


async def test_adopted_segment_yields_every_event_and_skips_a_torn_tail(tmp_path: Path) -> None:
    dead = _journal(tmp_path)
    for n in range(3):
        assert dead.append(f"event {n}".encode()) is dead.active
    [path] = _segments(tmp_path)
    torn = _frame(b"event 3")[:-2]
    with path.open("ab") as file:  # the kill came in the middle of a frame
        file.write(torn)
    _die(dead)

    adopter = _journal(tmp_path)
    [adopted] = await adopter.adopt_orphans(100)
    assert adopted.payloads == [b"event 0", b"event 1", b"event 2"]
    assert adopted.skipped_bytes == len(torn)
    assert adopted.segment.pending == 3
    adopter.committed(adopted.segment, 3)
    assert not path.exists()
    await adopter.close()
    assert _segments(tmp_path) == []


def test_a_frame_with_a_wrong_checksum_ends_the_segment() -> None:
    good, bad, after = _frame(b"good"), bytearray(_frame(b"bad!")), _frame(b"after")
    bad[-1] ^= 0xFF
    data = MAGIC + good + bytes(bad) + after
    assert read_frames(data) == ([b"good"], len(MAGIC) + len(good))
    assert read_frames(MAGIC[:4]) == ([], 0)
    oversized = FRAME.pack(1 << 30, 0)
    assert read_frames(MAGIC + oversized + b"x" * 16) == ([], len(MAGIC))


async def test_a_live_process_segment_is_not_adopted(tmp_path: Path) -> None:
    alive = _journal(tmp_path)
    alive.append(b"mine")
    other = _journal(tmp_path)
    # flock locks belong to open files: another open of the same file is refused even in
    # this process, as it would be in another one.
    assert await other.adopt_orphans(100) == []
    await other.close()
    await alive.close()  # pending: the event is not committed, so the segment stays
    assert len(_segments(tmp_path)) == 1


async def test_segments_of_another_database_are_left_alone(tmp_path: Path) -> None:
    dead = UsageJournal(tmp_path, "otherscope00")
    dead.open()
    dead.append(b"for another database")
    _die(dead)
    adopter = _journal(tmp_path)
    assert await adopter.adopt_orphans(100) == []
    await adopter.close()
    assert len(_segments(tmp_path)) == 1


async def test_rotation_keeps_a_segment_until_its_events_are_committed(tmp_path: Path) -> None:
    journal = _journal(tmp_path, segment_bytes=64, segment_seconds=3600)
    first = journal.append(b"x" * 40)
    second = journal.append(b"y" * 40)
    assert first is not None
    assert second is first
    await journal.rotate_if_due()
    assert journal.active is not first
    assert first.sealed
    assert first.path.exists()
    journal.committed(first, 1)
    assert first.path.exists()
    journal.committed(first, 1)
    assert not first.path.exists()
    # An empty segment does not rotate; an old one does, and is deleted at once when done.
    await journal.rotate_if_due()
    assert len(_segments(tmp_path)) == 1
    journal.segment_seconds = 0
    third = journal.append(b"z")
    assert third is not None
    journal.committed(third, 1)
    await journal.rotate_if_due()
    assert not third.path.exists()
    assert len(_segments(tmp_path)) == 1
    await journal.close()
    assert _segments(tmp_path) == []


async def test_two_adopters_racing_never_take_the_same_segment(tmp_path: Path) -> None:
    for n in range(8):
        dead = _journal(tmp_path)
        for m in range(5):
            dead.append(f"{n}-{m}".encode())
        _die(dead)
    first, second = _journal(tmp_path), _journal(tmp_path)
    taken = await asyncio.gather(first.adopt_orphans(10**6), second.adopt_orphans(10**6))
    payloads = [p for adopted in taken for found in adopted for p in found.payloads]
    assert sorted(payloads) == sorted(f"{n}-{m}".encode() for n in range(8) for m in range(5))
    names = [found.segment.path.name for adopted in taken for found in adopted]
    assert len(names) == len(set(names)) == 8


async def test_adoption_stops_near_the_budget(tmp_path: Path) -> None:
    for _ in range(3):
        dead = _journal(tmp_path)
        for _ in range(4):
            dead.append(b"e")
        _die(dead)
    adopter = _journal(tmp_path)
    assert len(await adopter.adopt_orphans(1)) == 1
    assert len(await adopter.adopt_orphans(5)) == 2


async def test_unfinished_segments_of_dead_processes_are_removed(tmp_path: Path) -> None:
    old = tmp_path / f".usage-{SCOPE}-1-00000000.journal.new"
    young = tmp_path / f".usage-{SCOPE}-2-00000000.journal.new"
    old.write_bytes(MAGIC[:3])
    young.write_bytes(MAGIC[:3])
    os.utime(old, (0, 0))
    adopter = _journal(tmp_path)
    assert await adopter.adopt_orphans(100) == []
    assert not old.exists()
    assert young.exists()  # maybe still being created


def test_journal_directory_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sqlite = f"sqlite+aiosqlite:///{tmp_path / 'xrouter.db'}"
    assert journal_directory(None, sqlite) == tmp_path / ".xrouter" / "usage-journal"
    assert journal_directory(None, UNREACHABLE_DATABASE) == Path(".xrouter/usage-journal")
    assert journal_directory("/var/lib/xrouter/journal", sqlite) == Path("/var/lib/xrouter/journal")
    assert usage_journal("", sqlite) is None
    monkeypatch.setenv("XROUTER_USAGE_JOURNAL_DIR", "")
    assert usage_journal(Settings().usage_journal_dir, sqlite) is None
    monkeypatch.setenv("XROUTER_USAGE_JOURNAL_DIR", str(tmp_path / "journal"))
    journal = usage_journal(Settings().usage_journal_dir, sqlite)
    assert journal is not None
    assert journal.directory == tmp_path / "journal"
    secret = "postgresql+asyncpg://xrouter:s3cret@db:5432/xrouter"
    assert database_scope(secret) == database_scope(secret.replace("s3cret", "rotated"))
    assert database_scope(secret) != database_scope(secret.replace("/xrouter", "/other"))


async def _count(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    async with sessions() as session:
        records = await session.scalar(select(func.count()).select_from(UsageRecord))
        query = select(func.sum(UsageRollup.requests)).where(UsageRollup.granularity == "day")
        rolled_up = await session.scalar(query)
        return records or 0, rolled_up or 0


async def test_recorder_journals_and_deletes_what_it_wrote(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    journal = UsageJournal(tmp_path, SCOPE)
    recorder = UsageRecorder(sessions, flush_seconds=60, batch_size=4, journal=journal)
    await recorder.start()
    for n in range(10):
        recorder.record(_event(n))
    [segment] = journal.held()
    assert segment.pending == 10
    assert await recorder.flush()
    assert segment.pending == 0
    await recorder.close()
    assert await _count(sessions) == (10, 10)
    assert _segments(tmp_path) == []


async def test_a_running_recorder_rotates_and_deletes_committed_segments(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    journal = UsageJournal(tmp_path, SCOPE, segment_seconds=0)
    recorder = UsageRecorder(
        sessions, flush_seconds=0.05, batch_size=100, journal=journal, adopt_seconds=0.05
    )
    await recorder.start()
    for n in range(10):
        recorder.record(_event(n))
    first = journal.active
    assert first is not None

    def rotated_and_deleted() -> bool:
        left = _segments(tmp_path)  # two while the old one is fsynced
        return len(left) == 1 and left[0] != first.path and left[0].stat().st_size == len(MAGIC)

    await _until(lambda: recorder.written == 10 and rotated_and_deleted())
    await recorder.close()
    assert await _count(sessions) == (10, 10)


async def test_events_left_when_the_database_was_down_at_close_are_written_at_next_start(
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = create_engine(UNREACHABLE_DATABASE)
    try:
        journal = UsageJournal(tmp_path, SCOPE)
        recorder = UsageRecorder(
            session_factory(down), flush_seconds=60, batch_size=100, journal=journal
        )
        await recorder.start()
        for n in range(7):
            recorder.record(_event(n))
        with caplog.at_level(logging.WARNING):
            await recorder.close(timeout=0.5)
        assert "7 of them kept in the journal" in caplog.text
    finally:
        await down.dispose()
    assert len(_segments(tmp_path)) == 1

    restarted = UsageRecorder(
        sessions, flush_seconds=60, batch_size=100, journal=UsageJournal(tmp_path, SCOPE)
    )
    await restarted.start()
    await _until(lambda: restarted.written == 7)
    await restarted.close()
    assert await _count(sessions) == (7, 7)
    assert _segments(tmp_path) == []


async def test_entries_of_another_version_are_written_and_garbage_is_dropped(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    row = msgspec.structs.asdict(_event(1))
    del row["cached_tokens"]  # a column the writing version did not have
    row |= {"id": "usage_fromanotherversion", "created_at": utc_now(), "cost_rub": 1.5}
    row["a_field_from_a_newer_version"] = 7
    dead = _journal(tmp_path)
    dead.append(msgspec.msgpack.encode(row))
    dead.append(b"\xc1 not msgpack")
    _die(dead)
    recorder = UsageRecorder(
        sessions, flush_seconds=60, batch_size=100, journal=UsageJournal(tmp_path, SCOPE)
    )
    await recorder.start()
    await _until(lambda: recorder.written == 1)
    assert recorder.dropped == 1
    await recorder.close()
    async with sessions() as session:
        [record] = (await session.scalars(select(UsageRecord))).all()
    assert (record.id, record.cached_tokens, record.cost_rub) == (row["id"], 0, 1.5)
    assert _segments(tmp_path) == []


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 (the recorder has no event to wait on)
            await asyncio.sleep(0.02)
