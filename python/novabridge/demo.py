"""`novabridge demo` and `novabridge chat`: a whole conversation through the full topology.

The host (this process, any Python >= 3.11) streams a WAV in real time through a `SonicBridge` to a worker process
(Python >= 3.12) whose session talks HTTP/2 over TLS to the emulator, or to Bedrock with ``--aws``. The assistant's
audio is played out on a simulated real-time speaker (interruptions flush it, as an avatar would), and written to a
WAV, and the whole conversation is drawn on one time axis (`novabridge.timeline`).
"""

from __future__ import annotations

import collections
import json
import math
import sys
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from novabridge.emulator.process import EmulatorProcess
from novabridge.emulator.vad import Utterance, find_utterances
from novabridge.events import AudioOut, Error, Interrupted, Reconnecting, SonicEvent, Transcript, TurnEnd
from novabridge.host.bridge import BridgeMetrics, Latency, SonicBridge
from novabridge.sonic.config import SonicConfig
from novabridge.timeline import Track, TurnMark, draw_timeline

FRAME_S = 0.02
"""The microphone's frame: what the host sends at a time."""
TAIL_S = 6.0
"""How long the microphone goes on (silent) after the input, while the last answer plays."""
HANGOVER_S = 0.3
"""A pause in the user's speech shorter than this does not end an utterance."""
OUT_RATE = 24000
EMULATOR_ARGS = ["--endpointing", "0.6", "--think", "0.3", "--speed", "2"]
EMULATOR_TIMING = "turns end after 600 ms of silence, answers start 300 ms later"
LATENCY_MEANING = (
    "latency: from the end of the user's speech (found by energy in the audio sent) to the first answer audio the "
    "host read; the assistant lane is the simulated speaker, which an interruption silences"
)
DEMO_TURNS = [
    ("Hello there! Who am I talking to?", "Hi! I am a voice assistant running on Nova Sonic, through novabridge."),
    (
        "What will the weather be like this weekend?",
        (
            "This weekend starts sunny and mild. Clouds arrive on Sunday afternoon, with some rain in the evening. "
            "Temperatures stay around eighteen degrees."
        ),
    ),
    ("Sorry, and what about tomorrow?", "Tomorrow is bright and dry, with a light breeze."),
]


@dataclass
class TurnReport:
    """What one turn looked like from the host; times in seconds since the first frame was sent."""

    user: str = ""
    assistant: list[str] = field(default_factory=list)
    speech_end_s: float | None = None
    """The detected end of the user's speech this turn answers."""
    first_audio_s: float | None = None
    interrupted: bool = False
    barge_in_s: float | None = None
    """The start of the user's speech that interrupted the answer."""
    quiet_s: float | None = None
    """When the speaker went quiet after the interruption."""
    dropped_bytes: int = 0

    def mark(self) -> TurnMark:
        """The turn as the timeline draws it."""
        return TurnMark(
            speech_end_s=self.speech_end_s,
            first_audio_s=self.first_audio_s,
            user_text=self.user,
            assistant_text=" ".join(self.assistant),
            barge_in_s=self.barge_in_s,
            quiet_s=self.quiet_s,
        )


@dataclass
class Conversation:
    """A conversation as the host heard it, on one clock: seconds since the first frame was sent."""

    turns: list[TurnReport]
    microphone: np.ndarray
    """What the host sent, at the bridge's ``host_rate``: the input, then the silence of a live microphone."""
    speaker: np.ndarray
    """What the simulated speaker played, at the bridge's ``out_rate`` (silence when there was nothing to play)."""


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono int16 samples and the rate of a PCM WAV (the first channel of a multichannel one)."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        return frames.reshape(-1, wav.getnchannels())[:, 0].copy(), wav.getframerate()


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """Write mono int16 samples."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.ascontiguousarray(samples, dtype="<i2").tobytes())


def demo_user_audio() -> np.ndarray:
    """The demo's user at 16 kHz: three utterances in a synthetic voice, the third one cutting into the second answer."""
    from novabridge.emulator.voice import synthesize

    rate = 16000
    pieces: list[np.ndarray] = [np.zeros(rate // 2, np.int16)]
    pauses = [6.0, 1.5, 6.0]  # the second pause is shorter than the answer: the user barges in
    for (said, _), pause in zip(DEMO_TURNS, pauses, strict=True):
        pieces.append(np.frombuffer(synthesize(said, voice="user", rate=rate), dtype="<i2"))
        pieces.append(np.zeros(round(pause * rate), np.int16))
    return np.concatenate(pieces)


class _Speaker:
    """A real-time loudspeaker: plays what it is given at ``rate`` on the conversation clock, silence otherwise."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._queued: collections.deque[np.ndarray] = collections.deque()
        self._played: list[np.ndarray] = []
        self._position = 0
        self._voice_until_s = 0.0

    def queue(self, samples: np.ndarray) -> None:
        self._queued.append(samples)

    def flush(self) -> int:
        """Drop what is queued (an interruption); the bytes dropped."""
        dropped = sum(len(q) for q in self._queued) * 2
        self._queued.clear()
        return dropped

    def quiet_from(self, now: float) -> float:
        """When the speaker goes quiet if flushed at ``now``: now, or when it ran out of audio before."""
        return now if self._queued else min(now, self._voice_until_s)

    def play_until(self, now: float) -> None:
        due = round(now * self.rate) - self._position
        while due > 0:
            if self._queued:
                chunk = self._queued[0][:due]
                self._queued[0] = self._queued[0][len(chunk) :]
                if not len(self._queued[0]):
                    self._queued.popleft()
                self._voice_until_s = (self._position + len(chunk)) / self.rate
            else:
                chunk = np.zeros(due, np.int16)
            self._played.append(chunk)
            self._position += len(chunk)
            due -= len(chunk)

    def played(self) -> np.ndarray:
        return np.concatenate(self._played) if self._played else np.zeros(0, np.int16)


class _Listener:
    """Turns the bridge's events into `TurnReport`s, with the user's speech found in the audio sent."""

    def __init__(self, utterances: Sequence[Utterance], speaker: _Speaker, log: bool) -> None:
        self.utterances = utterances
        self.speaker = speaker
        self.log = log
        self.reports = [TurnReport()]
        self._answered_at = -math.inf  # the previous answer's first audio: an end of speech before it is not ours

    def handle(self, event: SonicEvent, now: float) -> None:
        report = self.reports[-1]
        if isinstance(event, Transcript) and event.role == "USER":
            report.user = event.text
            self._say(f"  user      | {event.text}")
        elif isinstance(event, Transcript) and event.role == "ASSISTANT" and event.stage == "SPECULATIVE":
            report.assistant.append(event.text)
            self._say(f"  assistant | {event.text}")
        elif isinstance(event, AudioOut):
            if report.first_audio_s is None:
                report.first_audio_s = now
                # The end of speech this answers: the last one before its first audio, after the previous answer's.
                ends = [u.end_s for u in self.utterances if self._answered_at < u.end_s <= now]
                report.speech_end_s = ends[-1] if ends else None
                self._answered_at = now
            self.speaker.queue(np.frombuffer(event.pcm, dtype="<i2"))
        elif isinstance(event, Interrupted):
            report.interrupted = True
            starts = [u.start_s for u in self.utterances if u.start_s <= now]
            report.barge_in_s = starts[-1] if starts else None
            report.quiet_s = self.speaker.quiet_from(now)
            self._say("  --------- | interrupted by the user: queued assistant audio flushed")
        elif isinstance(event, TurnEnd):
            self._say(
                f"turn {len(self.reports)} done: {event.stop_reason}; end of speech to first audio "
                f"{_ms(report.mark().latency_s)}"
            )
            self.reports.append(TurnReport())
        elif isinstance(event, (Error, Reconnecting)):
            self._say(f"  !         | {event}")

    def _say(self, line: str) -> None:
        if self.log:
            print(line, flush=True)


def _ms(seconds: float | None) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds is not None else "n/a"


def converse(
    bridge: SonicBridge,
    audio: np.ndarray,
    utterances: Sequence[Utterance],
    *,
    tail_s: float = TAIL_S,
    log: bool = True,
) -> Conversation:
    """Stream ``audio`` (int16 at the bridge's host rate) in real time and play the answers on a simulated speaker.

    After ``audio`` the microphone goes on sending silence for ``tail_s``, as a live one would, while the last answer
    plays. ``utterances`` (in ``audio``) date the ends of speech the answers' latencies are counted from.
    """
    rate = bridge.host_rate
    frame = round(FRAME_S * rate)
    microphone = np.concatenate([audio, np.zeros(round(tail_s * rate), np.int16)])
    speaker = _Speaker(bridge.out_rate)
    listener = _Listener(utterances, speaker, log)
    start = time.monotonic()
    position = 0
    while (now := time.monotonic() - start) < len(microphone) / rate:
        while position < len(microphone) and position / rate <= now:
            bridge.send_audio(microphone[position : position + frame])
            position += frame
        events = bridge.poll(timeout=0.005)
        # Events are dated when the poll returned them; the speaker has played until then what it had before.
        now = time.monotonic() - start
        speaker.play_until(now)
        for event in events:
            listener.handle(event, now)
            if isinstance(event, Interrupted):
                listener.reports[-1].dropped_bytes += speaker.flush() + bridge.interrupt()
    turns = [r for r in listener.reports if r.user or r.assistant]
    return Conversation(turns, microphone[:position], speaker.played())


def run(
    *,
    out_dir: Path,
    worker_python: str | None,
    aws: bool = False,
    input_wav: Path | None = None,
    output_wav: Path | None = None,
) -> int:
    """Run the demo (no ``input_wav``) or a chat over a WAV; returns an exit status."""
    out_dir.mkdir(parents=True, exist_ok=True)
    worker = worker_python or sys.executable
    written: list[Path] = []
    if input_wav is None:
        audio, rate = demo_user_audio(), 16000
        write_wav(out_dir / "user.wav", audio, rate)
        written.append(out_dir / "user.wav")
    else:
        audio, rate = read_wav(input_wav)
    utterances = find_utterances(audio, rate, hangover_s=HANGOVER_S)
    emulator = None
    if aws:
        config = SonicConfig()
    else:
        scenario = out_dir / "scenario.json"
        turns = [{"user": said, "assistant": answer} for said, answer in DEMO_TURNS] if input_wav is None else []
        scenario.write_text(json.dumps({"turns": turns}))
        written.append(scenario)
        args = ["--scenario", str(scenario), *EMULATOR_ARGS]
        try:
            emulator = EmulatorProcess(worker, args)
        except RuntimeError as error:
            raise RuntimeError(f"{error} (is novabridge[emulator] installed there?)") from None
        config = emulator.config()
    source = "the scripted user" if input_wav is None else str(input_wav)
    command = "demo" if input_wav is None else "chat"
    print(f"novabridge {command}: host Python {sys.version.split()[0]}, worker {worker}", flush=True)
    print(f"  endpoint {config.endpoint_uri or 'Bedrock ' + config.region}", flush=True)
    if emulator is not None:
        print(f"  emulator: {EMULATOR_TIMING}", flush=True)
    print(
        f"  {source}: {len(audio) / rate:.1f} s at {rate} Hz, {len(utterances)} utterance(s) found "
        f"(energy over the noise floor, {HANGOVER_S * 1000:.0f} ms hangover)",
        flush=True,
    )
    try:
        booted = time.monotonic()
        # Entering the bridge waits until the worker's session is connected: no frame is sent before it is up.
        with SonicBridge(config, worker_python=worker, host_rate=rate, out_rate=OUT_RATE) as bridge:
            print(f"  session ready after {(time.monotonic() - booted) * 1000:.0f} ms; streaming starts", flush=True)
            conversation = converse(bridge, audio, utterances)
            metrics = bridge.metrics()
    finally:
        if emulator is not None:
            emulator.stop()
    assistant_wav = output_wav or out_dir / "assistant.wav"
    write_wav(assistant_wav, conversation.speaker, OUT_RATE)
    written.append(assistant_wav)
    marks = [report.mark() for report in conversation.turns]
    _print_tables(conversation.turns, marks, metrics)
    path = f"host Python {sys.version.split()[0]} -> SonicBridge -> worker -> "
    path += "Bedrock" if emulator is None else f"emulator: {EMULATOR_TIMING}"
    hops = f"bridge hop p50/p99: up {_hop(metrics.uplink)}, down {_hop(metrics.downlink)}; "
    hops += f"worker CPU {metrics.worker_cpu_percent:.1f} % of one core"
    what = command if input_wav is None else f"{command}: {input_wav.name}"
    timeline = out_dir / "timeline.png"
    draw_timeline(
        timeline,
        Track(conversation.microphone, rate),
        Track(conversation.speaker, OUT_RATE),
        marks,
        title=f"novabridge {what}: {len(marks)} turn(s), as the host heard them",
        notes=[path, LATENCY_MEANING, hops],
    )
    written.append(timeline)
    print(f"\nwrote {', '.join(str(path) for path in written)}", flush=True)
    return 0


def _hop(latency: Latency) -> str:
    p50, p99 = latency.p50_s, latency.p99_s
    return f"{p50 * 1000:.1f}/{p99 * 1000:.1f} ms" if p50 is not None and p99 is not None else "n/a"


def _print_tables(reports: Sequence[TurnReport], marks: Sequence[TurnMark], metrics: BridgeMetrics) -> None:
    print("\n| turn | user | first audio after end of speech | interrupted |")
    print("|---|---|---|---|")
    for number, (report, mark) in enumerate(zip(reports, marks, strict=True), 1):
        interrupted = "no"
        if report.interrupted:
            talk_over = mark.talk_over_s
            interrupted = "yes" if talk_over is None else f"yes, quiet {talk_over * 1000:.0f} ms after the user began"
        print(f"| {number} | {report.user} | {_ms(mark.latency_s)} | {interrupted} |")
    print("\n| bridge hop | samples | p50 | p99 |\n|---|--:|--:|--:|")
    for name, hop in (("host write to SDK send", metrics.uplink), ("SDK receive to host read", metrics.downlink)):
        p50, p99 = hop.p50_s, hop.p99_s
        shown = f"{p50 * 1e6:.0f} us | {p99 * 1e6:.0f} us" if p50 is not None and p99 is not None else "n/a | n/a"
        print(f"| {name} | {len(hop.samples_s)} | {shown} |")
    print(
        f"up: each SDK send of user audio, from the host's ring write of the last {FRAME_S * 1000:.0f} ms frame it "
        "carries; all sent after the session was ready, the microphone streaming silence after the input.\n"
        "down: each assistant audio chunk, from the SDK handing it to the worker's session to the host's read."
    )
    print(f"worker CPU {metrics.worker_cpu_percent:.1f} % of one core, {metrics.restarts} restarts")
