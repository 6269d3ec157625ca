"""A Pipecat voice bot as an application builds one: a pipeline of the context aggregators around
`AWSNovaSonicLLMService`, run by a `WorkerRunner`, with the microphone's audio queued as `InputAudioRawFrame`s.

Pipecat 1.14 cannot be given an endpoint: `AWSNovaSonicLLMService.create_client()` builds its SDK `Config` with
``endpoint_uri=f"https://bedrock-runtime.{region}.amazonaws.com"`` and no parameter or environment variable changes
that (SDK 0.9's `Config` reads none). `create_client` is public, so the bot subclasses the service and overrides it
with the emulator's endpoint; everything else is Pipecat's own. Trust needs no code: the SDK's default
`AWSCRTHTTPClient` reads ``SSL_CERT_FILE``, which the fixture points at a bundle with the emulator's CA, and so does
every copy of it that SDK 0.9 makes per call.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient
from aws_sdk_bedrock_runtime.config import Config
from novabridge.pytest_plugin import NovaSonicEmulator
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.frames.frames import Frame, InputAudioRawFrame, LLMRunFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.aws.nova_sonic.llm import AWSNovaSonicLLMService
from pipecat.workers.runner import WorkerRunner
from smithy_aws_core.auth.sigv4 import SigV4AuthScheme
from smithy_aws_core.identity.static import StaticCredentialsResolver
from smithy_core.shapes import ShapeID

from peers.microphone import RATE, Microphone


class NovaSonicAtEmulator(AWSNovaSonicLLMService):
    """Pipecat's Nova Sonic service, connecting to the emulator."""

    def __init__(self, emulator: NovaSonicEmulator, **kwargs: Any) -> None:
        super().__init__(
            access_key_id=emulator.access_key_id,
            secret_access_key=emulator.secret_access_key,
            region=emulator.region,
            **kwargs,
        )
        self.endpoint_uri = emulator.endpoint_uri
        self.configs: list[Config] = []

    def create_client(self) -> AsyncBedrockRuntimeClient:
        config = Config(
            endpoint_uri=self.endpoint_uri,
            region=self._region,
            aws_access_key_id=self._access_key_id,
            aws_secret_access_key=self._secret_access_key,
            aws_credentials_identity_resolver=StaticCredentialsResolver(),
            auth_schemes={ShapeID("aws.auth#sigv4"): SigV4AuthScheme(service="bedrock")},
        )
        self.configs.append(config)
        return AsyncBedrockRuntimeClient(config=config)


class FrameLog(FrameProcessor):
    """Keeps every frame the service sends downstream, in order, and passes it on."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []
        self._arrived = asyncio.Condition()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM:
            async with self._arrived:
                self.frames.append(frame)
                self._arrived.notify_all()
        await self.push_frame(frame, direction)

    def of(self, kind: type[Frame]) -> list[Any]:
        return [frame for frame in self.frames if isinstance(frame, kind)]

    async def wait_for(self, kind: type[Frame], count: int = 1, timeout: float = 20.0) -> list[Any]:
        """The first ``count`` frames of ``kind``, once that many have arrived."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.of(kind)) >= count)
        return self.of(kind)[:count]


class Bot:
    """A running pipeline: its service, its context, what it delivered and a live microphone."""

    def __init__(self, llm: NovaSonicAtEmulator, context: LLMContext, log: FrameLog, worker: PipelineWorker) -> None:
        self.llm = llm
        self.context = context
        self.log = log
        self.worker = worker
        self.microphone = Microphone(self.send_audio)

    async def send_audio(self, pcm: bytes) -> None:
        await self.worker.queue_frame(InputAudioRawFrame(audio=pcm, sample_rate=RATE, num_channels=1))

    def messages(self, role: str) -> list[Any]:
        return [message for message in self.context.get_messages() if message.get("role") == role]


@contextlib.asynccontextmanager
async def running_bot(emulator: NovaSonicEmulator, tools: list[FunctionSchema] | None = None) -> AsyncIterator[Bot]:
    """The bot, connected, its microphone streaming silence; stopped (the stream ended) on leaving."""
    llm = NovaSonicAtEmulator(
        emulator, settings=AWSNovaSonicLLMService.Settings(system_instruction="You are a helpful assistant.")
    )
    context = LLMContext(tools=tools) if tools else LLMContext()
    aggregators = LLMContextAggregatorPair(context)
    log = FrameLog()
    worker = PipelineWorker(
        Pipeline([aggregators.user(), llm, log, aggregators.assistant()]),
        params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=24000),
    )
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def on_started(_worker: PipelineWorker, _frame: Frame) -> None:
        started.set()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    bot = Bot(llm, context, log, worker)
    try:
        await asyncio.wait_for(started.wait(), 20)
        await worker.queue_frame(LLMRunFrame())  # the context goes to the service, which opens the prompt
        async with bot.microphone.live():
            # A second of room tone before anyone speaks, as a call starts: time for the prompt to open.
            await asyncio.sleep(1.0)
            yield bot
        await worker.stop_when_done()
        await asyncio.wait_for(running, 30)
    finally:
        if not running.done():
            await runner.cancel()
            await asyncio.wait_for(running, 30)


def run(conversation: Coroutine[Any, Any, None]) -> None:
    """A conversation to its end, within a minute."""
    asyncio.run(asyncio.wait_for(conversation, 60))
