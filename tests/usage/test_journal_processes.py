"""The usage journal across real processes: a child process SIGKILLed after recording, whose
segment a recorder adopts; a gateway instance killed under load, whose usage the surviving
instance writes; and the order of journal and answer: the record is in the journal before the
client has the whole answer, streamed or not."""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.gateway_fixtures import gateway_settings
from tests.gateway_processes import GatewayProcess, environment
from tests.servers import BackgroundLoop, RunningGateway
from tests.usage.test_durability import CLIENTS, LOAD_SECONDS, _keys
from tests.usage.test_journal import CHAT, SCOPE, _count, _segments, _until
from xrouter.emulators.server import RunningEmulator
from xrouter.storage.database import create_engine, session_factory
from xrouter.storage.migrate import upgrade
from xrouter.storage.models import UsageRecord, UsageRollup
from xrouter.usage.journal import UsageJournal, read_frames
from xrouter.usage.recorder import UsageRecorder

_CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from tests.usage.test_recorder import _event
    from xrouter.storage.database import create_engine, session_factory
    from xrouter.usage.journal import UsageJournal
    from xrouter.usage.recorder import UsageRecorder

    async def main(url, directory, count):
        engine = create_engine(url)
        journal = UsageJournal(Path(directory), sys.argv[4])
        recorder = UsageRecorder(session_factory(engine), flush_seconds=600, batch_size=10**6,
                                 journal=journal)
        await recorder.start()
        for n in range(count):
            recorder.record(_event(n))
            if n == count // 2:
                assert await recorder.flush()  # half of them are in the database already
        print("recorded", flush=True)
        await asyncio.sleep(600)

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


def _killed_child(database_url: str, directory: Path, count: int) -> None:
    """A python process that records ``count`` events (half of them written) and is SIGKILLed."""
    command = [sys.executable, "-c", _CHILD, database_url, str(directory), str(count), SCOPE]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2]
    ) as child:
        assert child.stdout is not None
        try:
            line = child.stdout.readline()
        finally:
            child.send_signal(signal.SIGKILL)
        assert line == b"recorded\n", line + child.stdout.read()


async def test_a_killed_process_journal_is_adopted_and_written_exactly_once(
    database_url: str, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    await asyncio.to_thread(_killed_child, database_url, tmp_path, 40)
    assert await _count(sessions) == (21, 21)
    assert len(_segments(tmp_path)) == 1
    survivor = UsageRecorder(
        sessions,
        flush_seconds=60,
        batch_size=100,
        journal=UsageJournal(tmp_path, SCOPE),
        adopt_seconds=0.05,
    )
    await survivor.start()
    await _until(lambda: survivor.written == 40)
    assert await _count(sessions) == (40, 40)
    assert len(_segments(tmp_path)) == 1  # the survivor's own
    await survivor.close()
    assert _segments(tmp_path) == []


class _Load:
    """Chat requests, streamed and not, from a few threads, each with its own request id."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.stop = threading.Event()
        self.answered: list[str] = []  # 200 responses whose body arrived in full
        self.failed: list[str] = []  # cut off: the instance was killed
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in range(CLIENTS)]

    def __enter__(self) -> _Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, client: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            for n in itertools.count():
                if self.stop.is_set():
                    return
                request_id = f"journal-{client}-{n}"
                headers = {"Authorization": f"Bearer {self.key}", "x-request-id": request_id}
                body = {**CHAT, "stream": n % 2 == 0}
                try:
                    response = http.post("/v1/chat/completions", json=body, headers=headers)
                except httpx.TransportError:
                    self.failed.append(request_id)
                    time.sleep(0.01)
                    continue
                if response.status_code == 200:
                    self.answered.append(request_id)


def _recorded(database_url: str, key_id: str) -> tuple[list[str], int]:
    """The request ids of the key's usage records, and the requests its rollups count."""

    async def query() -> tuple[list[str], int]:
        engine = create_engine(database_url)
        try:
            async with session_factory(engine)() as session:
                records = select(UsageRecord.request_id).where(UsageRecord.key_id == key_id)
                rolled_up = select(func.sum(UsageRollup.requests)).where(
                    UsageRollup.key_id == key_id, UsageRollup.granularity == "day"
                )
                ids = list((await session.scalars(records)).all())
                return ids, int(await session.scalar(rolled_up) or 0)
        finally:
            await engine.dispose()

    return asyncio.run(query())


@pytest.mark.postgres
@pytest.mark.parametrize("empty_database_url", ["postgresql"], indirect=True)
def test_a_survivor_writes_the_usage_of_an_instance_killed_mid_load(
    empty_database_url: str, tmp_path: Path
) -> None:
    database_url = empty_database_url
    key, key_id, _ = asyncio.run(_keys(database_url))
    # The writer's timer is beyond the test: what reaches the database came from the journal.
    env = environment(
        XROUTER_DATABASE_URL=database_url,
        XROUTER_USAGE_FLUSH_SECONDS="600",
        XROUTER_USAGE_JOURNAL_DIR=str(tmp_path / "journal"),
    )
    survivor = GatewayProcess(tmp_path, env)
    try:
        victim = GatewayProcess(tmp_path, env)
        with _Load(victim.url, key) as load:
            time.sleep(LOAD_SECONDS)
            victim.kill()
        answered = set(load.answered)
        assert answered
        deadline = time.monotonic() + 15
        while not answered <= set(recorded := _recorded(database_url, key_id)[0]):
            assert time.monotonic() < deadline, f"{len(answered - set(recorded))} lost"
            time.sleep(0.2)
        ids, rolled_up = _recorded(database_url, key_id)
        # The adopted segment goes once the batch holding its last events has committed.
        while len(_segments(tmp_path / "journal")) > 1:
            assert time.monotonic() < deadline + 10, _segments(tmp_path / "journal")
            time.sleep(0.2)
    finally:
        survivor.terminate()
    assert len(ids) == len(set(ids)) == rolled_up, "a request was recorded twice"
    # Recorded but never answered: only a request cut off by the kill.
    assert set(ids) - answered <= set(load.failed)
    assert list((tmp_path / "journal").iterdir()) == []


def _journaled_ids(directory: Path) -> set[str]:
    ids = set()
    for path in _segments(directory):
        payloads, _ = read_frames(path.read_bytes())
        ids |= {msgspec.msgpack.decode(payload)["id"] for payload in payloads}
    return ids


@pytest.fixture
def journaled_gateway(
    loop: BackgroundLoop, emulators: dict[str, RunningEmulator], tmp_path: Path
) -> Iterator[tuple[RunningGateway, Path]]:
    # Nothing is written to the database during the test: every event stays in the journal.
    settings = gateway_settings(
        tmp_path / "xrouter.db",
        emulators["gigachat"].url,
        emulators["yandex"].url,
        usage_flush_seconds=600,
        usage_journal_dir=str(tmp_path / "journal"),
    )
    upgrade(settings.database_url)
    running = RunningGateway(settings, loop)
    yield running, tmp_path / "journal"
    running.stop()


STREAMS = [
    ("/v1/chat/completions", {**CHAT, "stream": True}, "data: [DONE]"),
    ("/v1/messages", {**CHAT, "max_tokens": 50, "stream": True}, "event: message_stop"),
    (
        "/v1/responses",
        {"model": CHAT["model"], "input": "Hi", "stream": True},
        "event: response.completed",
    ),
]

ANSWERS = [
    ("/v1/chat/completions", CHAT),
    ("/v1/messages", {**CHAT, "max_tokens": 50}),
    ("/v1/responses", {"model": CHAT["model"], "input": "Hi"}),
    ("/v1/embeddings", {"model": "gigachat/Embeddings", "input": "Hi"}),
]


def test_usage_is_journaled_before_the_client_has_the_whole_answer(
    journaled_gateway: tuple[RunningGateway, Path],
) -> None:
    gateway, directory = journaled_gateway
    headers = {"Authorization": f"Bearer {gateway.create_key('journal').key}"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as http:
        for path, body, final in STREAMS:
            with http.stream("POST", path, json=body) as response:
                assert response.status_code == 200
                generation = response.headers["x-generation-id"]
                for line in response.iter_lines():
                    if line == final:
                        break
                else:
                    pytest.fail(f"{path}: the stream ended without {final!r}")
                # The client has the last event: the usage must be in the journal already.
                assert generation in _journaled_ids(directory), path
        for endpoint, payload in ANSWERS:
            answer = http.post(endpoint, json=payload)
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-generation-id"] in _journaled_ids(directory), endpoint
