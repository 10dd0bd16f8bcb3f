"""The YandexGPT emulator's gRPC face with raw ``yandexcloud`` stubs, and its CLI options."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from yandex.cloud.ai.foundation_models.v1.text_common_pb2 import Message
from yandex.cloud.ai.foundation_models.v1.text_generation.text_generation_service_pb2 import (
    CompletionRequest,
)
from yandex.cloud.ai.foundation_models.v1.text_generation.text_generation_service_pb2_grpc import (
    TextGenerationAsyncServiceStub,
    TextGenerationServiceStub,
)
from yandex.cloud.operation.operation_service_pb2 import CancelOperationRequest
from yandex.cloud.operation.operation_service_pb2_grpc import OperationServiceStub

from xrouter.emulators import cli
from xrouter.emulators.options import EmulatorOptions
from xrouter.emulators.server import RunningEmulator, start_emulator

AUTH = (("authorization", "Api-Key AQVNkey"),)


def _request(uri: str = "gpt://b1gfolder/yandexgpt/latest") -> CompletionRequest:
    return CompletionRequest(model_uri=uri, messages=[Message(role="user", text="Привет")])


@pytest.fixture
async def channel() -> AsyncIterator[tuple[grpc.aio.Channel, RunningEmulator]]:
    emulator = await start_emulator("yandex", EmulatorOptions(stream_delay_ms=500), grpc_port=0)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{emulator.grpc_port}") as open_channel:
        yield open_channel, emulator
    await emulator.close()


async def test_status_codes_and_folder_metadata(
    channel: tuple[grpc.aio.Channel, RunningEmulator],
) -> None:
    stub = TextGenerationServiceStub(channel[0])
    cases = [
        (_request(), (), grpc.StatusCode.UNAUTHENTICATED),
        (_request("gpt://b1gfolder/yandexgpt/nightly"), AUTH, grpc.StatusCode.INVALID_ARGUMENT),
        (_request(), (*AUTH, ("x-folder-id", "b1gother")), grpc.StatusCode.PERMISSION_DENIED),
    ]
    for request, metadata, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stub.Completion(request, metadata=metadata):
                pass
        assert caught.value.code() == code
    [answer] = [frame async for frame in stub.Completion(_request(), metadata=AUTH)]
    assert answer.alternatives[0].status == answer.alternatives[0].ALTERNATIVE_STATUS_FINAL


async def test_injected_quota_error_is_resource_exhausted() -> None:
    options = EmulatorOptions(error_rate=1.0, error_status=429)
    emulator = await start_emulator("yandex", options, grpc_port=0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{emulator.grpc_port}") as open_channel:
            stub = TextGenerationServiceStub(open_channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for _ in stub.Completion(_request(), metadata=AUTH):
                    pass
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "quota limit exceed" in (caught.value.details() or "")
    finally:
        await emulator.close()


async def test_deferred_operation_cancelled_over_grpc(
    channel: tuple[grpc.aio.Channel, RunningEmulator],
) -> None:
    operation = await TextGenerationAsyncServiceStub(channel[0]).Completion(
        _request(), metadata=AUTH
    )
    assert not operation.done
    cancelled = await OperationServiceStub(channel[0]).Cancel(
        CancelOperationRequest(operation_id=operation.id), metadata=AUTH
    )
    assert cancelled.done
    assert cancelled.error.code == grpc.StatusCode.CANCELLED.value[0]


def test_cli_options_for_the_grpc_face_and_service_accounts(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    key = tmp_path / "key.json"
    args = parser.parse_args(
        [
            "yandex",
            "--grpc-port",
            "0",
            "--service-account-key",
            str(key),
            "--service-account-key",
            "b",
        ]
    )
    assert (args.grpc_port, args.service_account_key) == (0, [key, Path("b")])
    assert parser.parse_args(["yandex"]).grpc_port is None
    assert cli.run(parser.parse_args(["gigachat", "--grpc-port", "9000"])) == 2
    # A key file that does not exist stops the start with a message, not a traceback.
    assert (
        cli.run(parser.parse_args(["yandex", "--port", "0", "--service-account-key", str(key)]))
        == 2
    )
