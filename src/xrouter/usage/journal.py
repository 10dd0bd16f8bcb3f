"""A per-process append-only journal of usage events, so that a killed process loses none.

Each process appends to its own segment file in a directory shared by the processes of a host,
and holds an exclusive ``flock`` on every segment it has written until the segment's events are
committed to the database; then it deletes the segment. A process that dies (SIGKILL, OOM)
releases its locks with it, so any surviving process, or the restarted one, can take the lock,
read the segments and write their events. Events keep the ids they were recorded with and the
database skips ids it already has, so replaying a segment whose events were partly written
already is harmless.

One event is one frame, written with a single ``write``: length and CRC-32 of the payload, then
the payload. The write lands in the page cache, which survives the death of the process; there
is no fsync per event, so a power loss or kernel crash may lose the last seconds (a segment is
fsynced when it is rotated and when the process closes it). A frame cut short, or one whose
checksum does not match, ends the segment for the reader.

Segment names carry a fingerprint of the database URL: processes adopt only the segments
written for the database they write to. The directory belongs on a local file system: the
locks are ``flock`` locks, which network file systems may not share between hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import make_url

logger = logging.getLogger(__name__)

MAGIC = b"XRUSAGE1\n"
FRAME = struct.Struct("<II")  # payload length, CRC-32 of the payload
SUFFIX = ".journal"
DEFAULT_SEGMENT_BYTES = 4 * 1024 * 1024
DEFAULT_SEGMENT_SECONDS = 30.0
# One frame's payload is one usage event (a few hundred bytes); anything far larger is damage.
MAX_PAYLOAD_BYTES = 1024 * 1024
_READ_CHUNK = 1024 * 1024
UNFINISHED_SEGMENT_SECONDS = 60.0


def usage_journal(setting: str | None, database_url: str) -> UsageJournal | None:
    """The journal the ``usage_journal_dir`` setting asks for (None: turned off)."""
    directory = journal_directory(setting, database_url)
    if directory is None:
        return None
    return UsageJournal(directory, database_scope(database_url))


def journal_directory(setting: str | None, database_url: str) -> Path | None:
    """Where the journal lives: the configured directory; unset, ``.xrouter/usage-journal``
    next to an embedded SQLite database, else in the working directory; "" turns it off."""
    if setting is not None:
        return Path(setting) if setting.strip() else None
    database = make_url(database_url).database
    if database_url.startswith("sqlite") and database and database != ":memory:":
        return Path(database).parent / ".xrouter" / "usage-journal"
    return Path(".xrouter") / "usage-journal"


def database_scope(database_url: str) -> str:
    """A short fingerprint of the database URL (without its password) for segment names."""
    shown = make_url(database_url).render_as_string(hide_password=True)
    return hashlib.sha256(shown.encode()).hexdigest()[:12]


@dataclass(eq=False)
class Segment:
    """One segment file this process holds the lock of."""

    path: Path
    fd: int
    # Sealed: no more appends (rotated, or adopted from a process that died).
    sealed: bool = False
    # Events of this segment that are not yet committed to the database.
    pending: int = 0
    size: int = 0
    opened: float = field(default_factory=time.monotonic)
    # An fsync runs in a thread: the file must not be closed under it.
    syncing: bool = False


@dataclass(eq=False)
class AdoptedSegment:
    """A dead process's segment, now locked by this one, with the payloads it held."""

    segment: Segment
    payloads: list[bytes]
    # Bytes at the end that did not form a whole frame with a valid checksum.
    skipped_bytes: int


class UsageJournal:
    """Segments of one process: ``append`` per event, ``committed`` as the database takes them.

    ``open`` creates the first segment; ``rotate_if_due`` and ``adopt_orphans`` run off the
    request path (the recorder's background task); ``close`` deletes what is committed and
    keeps the rest for another process to adopt.
    """

    def __init__(
        self,
        directory: Path,
        scope: str,
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
    ) -> None:
        self.directory = directory
        self.scope = scope
        self.segment_bytes = segment_bytes
        self.segment_seconds = segment_seconds
        self.failures = 0
        self._active: Segment | None = None
        self._held: set[Segment] = set()

    @property
    def active(self) -> Segment | None:
        """The segment ``append`` writes to."""
        return self._active

    def held(self) -> list[Segment]:
        """Every segment this process holds the lock of."""
        return sorted(self._held, key=lambda segment: segment.path.name)

    def open(self) -> None:
        """Create the directory and this process's first segment."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._active = self._new_segment()

    def append(self, payload: bytes) -> Segment | None:
        """Write one event with one ``write`` call; the segment it is in, None if it could not
        be written (the event then lives in memory only)."""
        segment = self._active
        if segment is None:
            return None
        frame = FRAME.pack(len(payload), zlib.crc32(payload)) + payload
        try:
            written = os.write(segment.fd, frame)
        except OSError:
            written = 0
        if written != len(frame):
            self._failed(segment)
            return None
        segment.size += written
        segment.pending += 1
        return segment

    def committed(self, segment: Segment, count: int) -> None:
        """``count`` events of ``segment`` are in the database now."""
        segment.pending -= count
        self._delete_if_done(segment)

    async def rotate_if_due(self) -> None:
        """Start a new segment when the active one is large or old enough; the old one is
        fsynced and deleted once its events are committed."""
        segment = self._active
        if segment is None or segment.size <= len(MAGIC):
            return
        age = time.monotonic() - segment.opened
        if segment.size < self.segment_bytes and age < self.segment_seconds:
            return
        try:
            self._active = self._new_segment()
        except OSError:
            logger.exception("could not start a new usage journal segment in %s", self.directory)
            return
        segment.sealed = True
        await self._sync(segment)
        self._delete_if_done(segment)

    async def adopt_orphans(self, budget: int) -> list[AdoptedSegment]:
        """Lock and read the segments of dead processes (this database's only), up to about
        ``budget`` events (at least one segment). Each adopted segment counts all its events
        as pending: report every one of them to ``committed``."""
        held = {segment.path.name for segment in self._held}
        pattern = f"usage-{self.scope}-*{SUFFIX}"
        adopted = await asyncio.to_thread(_take_orphans, self.directory, pattern, held, budget)
        for found in adopted:
            self._held.add(found.segment)
            found.segment.pending = len(found.payloads)
            self._delete_if_done(found.segment)
        return adopted

    async def close(self) -> None:
        """Delete the segments whose events are all committed; fsync and unlock the others,
        which stay for the next process to adopt."""
        self._active = None
        for segment in self.held():
            segment.sealed = True
            if segment.pending > 0:
                await self._sync(segment)
                logger.warning(
                    "%d usage events are not in the database yet; they stay in %s",
                    segment.pending,
                    segment.path,
                )
                self._held.discard(segment)
                os.close(segment.fd)
            else:
                self._delete_if_done(segment)

    def _new_segment(self) -> Segment:
        name = f"usage-{self.scope}-{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"
        path = self.directory / name
        # Locked and given its header under a name adopters ignore, then renamed: an adopter
        # never sees a segment its live owner has not locked yet.
        hidden = path.with_name(f".{name}.new")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(hidden, flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, MAGIC)
            os.rename(hidden, path)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(hidden)
            raise
        segment = Segment(path, fd, size=len(MAGIC))
        self._held.add(segment)
        return segment

    def _failed(self, segment: Segment) -> None:
        self.failures += 1
        if self.failures == 1 or self.failures % 10_000 == 0:
            logger.error(
                "could not write to the usage journal %s (%d times)", segment.path, self.failures
            )
        # A partly written frame would hide every later one from readers: cut it off.
        with contextlib.suppress(OSError):
            os.ftruncate(segment.fd, segment.size)

    async def _sync(self, segment: Segment) -> None:
        segment.syncing = True
        try:
            await asyncio.to_thread(os.fsync, segment.fd)
        except OSError:
            logger.warning("could not fsync the usage journal %s", segment.path, exc_info=True)
        finally:
            segment.syncing = False

    def _delete_if_done(self, segment: Segment) -> None:
        if not segment.sealed or segment.pending > 0 or segment.syncing:
            return
        if segment not in self._held:
            return
        self._held.discard(segment)
        # Unlinked while still locked: an adopter that opened it meanwhile finds the name gone
        # once it gets the lock, and leaves it.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(segment.path)
        os.close(segment.fd)


def _take_orphans(
    directory: Path, pattern: str, held: set[str], budget: int
) -> list[AdoptedSegment]:
    for unfinished in directory.glob(f".{pattern}.new"):
        _remove_if_unlocked(unfinished)  # its creator died before it became a segment
    adopted: list[AdoptedSegment] = []
    taken = 0
    for path in sorted(directory.glob(pattern)):
        if adopted and taken >= budget:
            break
        if path.name not in held and (found := _take(path)) is not None:
            adopted.append(found)
            taken += len(found.payloads)
    return adopted


def _remove_if_unlocked(path: Path) -> None:
    try:
        # A young one may be between its creation and its lock.
        if time.time() - path.stat().st_mtime < UNFINISHED_SEGMENT_SECONDS:
            return
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.unlink(path)
    except OSError:
        pass  # still being created, or gone already
    finally:
        os.close(fd)


def _take(path: Path) -> AdoptedSegment | None:
    """Lock ``path`` if its owner is gone and read its events; None if it is still held."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # The owner (or another adopter) may have deleted it between our open and our lock.
        if os.stat(path).st_ino != os.fstat(fd).st_ino:
            os.close(fd)
            return None
        data = _read_all(fd)
    except (BlockingIOError, FileNotFoundError):
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        logger.warning("could not read the usage journal %s", path, exc_info=True)
        return None
    if data and not data.startswith(MAGIC[: len(data)]):
        # Not a segment this version can read: leave it for one that can.
        logger.error("%s is not a usage journal segment this version reads; left alone", path)
        os.close(fd)
        return None
    payloads, end = read_frames(data)
    skipped = len(data) - end
    if skipped:
        logger.warning("usage journal %s: %d bytes at its end are torn, skipped", path, skipped)
    segment = Segment(path, fd, sealed=True, size=len(data))
    logger.info("adopted usage journal %s with %d events", path.name, len(payloads))
    return AdoptedSegment(segment, payloads, skipped)


def read_frames(data: bytes) -> tuple[list[bytes], int]:
    """The payloads in a segment's bytes, and where the last whole, valid frame ends (0: not
    even a whole header)."""
    payloads: list[bytes] = []
    if not data.startswith(MAGIC):
        return payloads, 0
    end = len(MAGIC)
    for payload, after in _frames(data, end):
        payloads.append(payload)
        end = after
    return payloads, end


def _frames(data: bytes, position: int) -> Iterator[tuple[bytes, int]]:
    while position + FRAME.size <= len(data):
        length, checksum = FRAME.unpack_from(data, position)
        start = position + FRAME.size
        if length > MAX_PAYLOAD_BYTES or start + length > len(data):
            return
        payload = data[start : start + length]
        if zlib.crc32(payload) != checksum:
            return
        position = start + length
        yield payload, position


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, _READ_CHUNK):
        chunks.append(chunk)
    return b"".join(chunks)
