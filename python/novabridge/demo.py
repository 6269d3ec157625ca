"""`novabridge demo` and `novabridge chat`: a whole conversation through the full topology.

The host (this process, any Python >= 3.11) streams a WAV in real time through a `SonicBridge` to a worker process
(Python >= 3.12) whose session talks HTTP/2 over TLS to the emulator, or to Bedrock with ``--aws``. The assistant's
audio is played out on a simulated real-time speaker (interruptions flush it, as an avatar would), and written to a
WAV with a transcript and a latency plot.
"""

from __future__ import annotations

import json
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from novabridge.bridge import SonicBridge
from novabridge.emulator.process import EmulatorProcess
from novabridge.protocol import AudioOut, Error, Interrupted, Reconnecting, SonicEvent, Transcript, TurnEnd
from novabridge.sonic.config import SonicConfig

FRAME_S = 0.02
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
    """What one turn looked like from the host."""

    user: str = ""
    assistant: list[str] = field(default_factory=list)
    speech_end_s: float | None = None
    first_audio_s: float | None = None
    interrupted: bool = False
    dropped_bytes: int = 0

    @property
    def latency_s(self) -> float | None:
        """From the end of the user's speech to the first assistant audio, as the host saw it."""
        if self.speech_end_s is None or self.first_audio_s is None:
            return None
        return self.first_audio_s - self.speech_end_s


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


def demo_user_audio() -> tuple[np.ndarray, list[float]]:
    """The demo's user: three utterances in a synthetic voice, the third one cutting into the second answer."""
    from novabridge.emulator.voice import synthesize

    rate = 16000
    pieces: list[np.ndarray] = [np.zeros(rate // 2, np.int16)]
    ends: list[float] = []
    pauses = [6.0, 1.5, 6.0]  # the second pause is shorter than the answer: the user barges in
    for (said, _), pause in zip(DEMO_TURNS, pauses, strict=True):
        speech = np.frombuffer(synthesize(said, voice="user", rate=rate), dtype="<i2")
        start = sum(len(p) for p in pieces)
        pieces.append(speech)
        ends.append((start + int(np.flatnonzero(speech)[-1]) + 1) / rate)  # the last voiced sample
        pieces.append(np.zeros(round(pause * rate), np.int16))
    return np.concatenate(pieces), ends


def converse(
    bridge: SonicBridge, audio: np.ndarray, speech_ends: list[float] | None, *, log: bool = True
) -> tuple[list[TurnReport], np.ndarray]:
    """Stream ``audio`` (at the bridge's host rate) in real time and play the answers on a simulated speaker."""
    rate = bridge.host_rate
    frame = round(FRAME_S * rate)
    out_rate = bridge.out_rate
    speaker: list[np.ndarray] = []
    queued: list[np.ndarray] = []  # assistant audio received, not yet played
    played = 0  # samples played so far on the speaker clock
    reports: list[TurnReport] = [TurnReport()]
    start = time.monotonic()
    tail = 6.0
    total_s = len(audio) / rate + tail
    position = 0
    while (now := time.monotonic() - start) < total_s:
        while position < len(audio) and position / rate <= now:
            bridge.send_audio(audio[position : position + frame])
            position += frame
        for event in bridge.poll(timeout=0.005):
            _handle(event, reports, queued, now, speech_ends, log)
            if isinstance(event, Interrupted):
                dropped = sum(len(q) for q in queued) * 2 + bridge.interrupt()
                reports[-1].dropped_bytes += dropped
                queued.clear()
        # The speaker plays in real time; silence when nothing is queued.
        due = round(now * out_rate) - played
        while due > 0:
            chunk = queued[0][:due] if queued else np.zeros(due, np.int16)
            if queued:
                queued[0] = queued[0][len(chunk) :]
                if not len(queued[0]):
                    queued.pop(0)
            speaker.append(chunk)
            played += len(chunk)
            due -= len(chunk)
    return [r for r in reports if r.user or r.assistant], np.concatenate(speaker) if speaker else np.zeros(0, np.int16)


def _handle(
    event: SonicEvent,
    reports: list[TurnReport],
    queued: list[np.ndarray],
    now: float,
    speech_ends: list[float] | None,
    log: bool,
) -> None:
    report = reports[-1]
    if isinstance(event, Transcript) and event.role == "USER":
        report.user = event.text
        index = len(reports) - 1
        if speech_ends is not None and index < len(speech_ends):
            report.speech_end_s = speech_ends[index]
        if log:
            print(f"  user      | {event.text}", flush=True)
    elif isinstance(event, Transcript) and event.role == "ASSISTANT" and event.stage == "SPECULATIVE":
        report.assistant.append(event.text)
        if log:
            print(f"  assistant | {event.text}", flush=True)
    elif isinstance(event, AudioOut):
        if report.first_audio_s is None:
            report.first_audio_s = now
        queued.append(np.frombuffer(event.pcm, dtype="<i2"))
    elif isinstance(event, Interrupted):
        report.interrupted = True
        if log:
            print("  --------- | interrupted by the user: queued assistant audio flushed", flush=True)
    elif isinstance(event, TurnEnd):
        if log:
            latency = report.latency_s
            shown = f"{latency * 1000:.0f} ms" if latency is not None else "n/a"
            print(f"turn {len(reports)} done: {event.stop_reason}; end of speech to first audio {shown}", flush=True)
        reports.append(TurnReport())
    elif isinstance(event, (Error, Reconnecting)) and log:
        print(f"  !         | {event}", flush=True)


def _plot(reports: list[TurnReport], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"turn {i + 1}" for i in range(len(reports))]
    values = [(r.latency_s or 0.0) * 1000 for r in reports]
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.bar(labels, values, color=["#c44" if r.interrupted else "#48a" for r in reports])
    axes.set_ylabel("end of user speech to first audio (ms)")
    axes.set_title("novabridge demo: latency per turn (red: interrupted)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


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
    if input_wav is None:
        audio, speech_ends = demo_user_audio()
        rate = 16000
        write_wav(out_dir / "user.wav", audio, rate)
    else:
        audio, rate = read_wav(input_wav)
        speech_ends = None
    emulator = None
    if aws:
        config = SonicConfig()
    else:
        scenario = out_dir / "scenario.json"
        turns = [{"user": said, "assistant": answer} for said, answer in DEMO_TURNS] if input_wav is None else []
        scenario.write_text(json.dumps({"turns": turns}))
        args = ["--scenario", str(scenario), "--endpointing", "0.6", "--think", "0.3", "--speed", "2"]
        try:
            emulator = EmulatorProcess(worker, args)
        except RuntimeError as error:
            raise RuntimeError(f"{error} (is novabridge[emulator] installed there?)") from None
        config = emulator.config()
    print(f"novabridge demo: host Python {sys.version.split()[0]}, worker {worker}", flush=True)
    print(f"  endpoint {config.endpoint_uri or 'Bedrock ' + config.region}", flush=True)
    if emulator is not None:
        print("  emulator: turns end after 600 ms of silence, answers start 300 ms later", flush=True)
    try:
        with SonicBridge(config, worker_python=worker, host_rate=rate, out_rate=24000) as bridge:
            reports, speaker = converse(bridge, audio, speech_ends)
            metrics = bridge.metrics()
    finally:
        if emulator is not None:
            emulator.stop()
    write_wav(output_wav or out_dir / "assistant.wav", speaker, 24000)
    _plot(reports, out_dir / "latency.png")
    print("\n| turn | user | first audio after end of speech | interrupted |")
    print("|---|---|---|---|")
    for number, report in enumerate(reports, 1):
        latency = f"{report.latency_s * 1000:.0f} ms" if report.latency_s is not None else "n/a"
        print(f"| {number} | {report.user} | {latency} | {'yes' if report.interrupted else 'no'} |")
    print("\n| bridge hop | frames | p50 | p99 |\n|---|--:|--:|--:|")
    for name, hop in (("host write to SDK send", metrics.uplink), ("SDK receive to host read", metrics.downlink)):
        p50, p99 = hop.p50_s, hop.p99_s
        shown = f"{p50 * 1e6:.0f} us | {p99 * 1e6:.0f} us" if p50 is not None and p99 is not None else "n/a | n/a"
        print(f"| {name} | {len(hop.samples_s)} | {shown} |")
    print(f"worker CPU {metrics.worker_cpu_percent:.1f} % of one core, {metrics.restarts} restarts")
    print(f"\nwrote {out_dir}/assistant.wav, {out_dir}/latency.png", flush=True)
    return 0
