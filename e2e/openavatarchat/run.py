"""`make oac-e2e`: OpenAvatarChat's own server, headless Chromium as the user, Nova Sonic through novabridge.

Run inside a network namespace of its own where only loopback exists (the Makefile starts it with ``unshare -n``),
on the OpenAvatarChat test environment's Python (3.11, OAC's pins, the novabridge wheel). As a new user would, it
sets up a copy of an OpenAvatarChat checkout with ``novabridge openavatarchat install --emulator``, starts
``novabridge emulator`` from that environment (which runs it on the worker's Python) and OAC's ``src/demo.py``, then
drives OAC's page in Chromium with a fake microphone playing a speech-like WAV: three turns, the user cutting into
the second answer. It passes only if every answer is heard in the page and its transcript shows, the page goes
quiet soon after the barge-in, the emulator received the audio that left the browser in order, and closing the page
leaves no worker, thread, shared memory or log line above INFO behind. It writes ``report.md``, ``results.json``
and ``timeline.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from e2e.openavatarchat import analysis

HERE = Path(__file__).resolve().parent
RATE = 16000
LEAD_S = 4.0
"""Silence the fake microphone plays before the first turn, while the page connects."""
TAIL_S = 8.0
"""How long the run goes on after the WAV's last sample: the last answer, and a margin."""
ENDPOINTING_S = 0.45
THINK_S = 0.2
"""The emulator's settings: silence that ends a user turn, and time from then to the answer's first audio."""
QUIET_BOUND_S = 0.5
"""The page must be quiet this soon after the user's voice starts over an answer (the goal is 0.25 s)."""
CLICK_S = 0.025
CLICK_AFTER_S = 2.5
ANSWER_BOUND_S = 3.0
"""Each answer must be heard this soon after the end of the user's speech."""
SPARE_WORKERS = 1
PORT = 8282
LOG_LEVELS_ABOVE_INFO = re.compile(r"\| (WARNING|ERROR|CRITICAL) +\||^(WARNING|ERROR|CRITICAL):|Traceback")


class Failed(Exception):
    """A check of the run failed."""


@dataclass
class Turn:
    """One user turn and its answer, as the page saw them (page clock, seconds)."""

    user_text: str
    answer_text: str
    wav_start_s: float
    wav_end_s: float
    """Where the utterance is in the user's WAV."""
    speech_start_s: float = 0.0
    speech_end_s: float = 0.0
    """The same, on the page's clock: when the fake microphone played it."""
    first_heard_s: float | None = None
    interrupted: bool = False
    quiet_s: float | None = None
    """For the turn whose voice cut into the previous answer: when the page went quiet."""

    @property
    def latency_s(self) -> float | None:
        """End of the user's speech at the microphone to the first audio heard in the page."""
        return None if self.first_heard_s is None else self.first_heard_s - self.speech_end_s

    @property
    def overhead_s(self) -> float | None:
        """`latency_s` less the emulator's configured endpointing and think time."""
        return None if self.latency_s is None else self.latency_s - ENDPOINTING_S - THINK_S


@dataclass
class Results:
    """What `results.json` holds."""

    turns: list[Turn] = field(default_factory=list)
    barge_in_to_quiet_s: float | None = None
    wav_to_page_s: float = 0.0
    """The page's clock at the user WAV's first sample: where the fake microphone started playing it."""
    recording: list[dict[str, float]] = field(default_factory=list)
    leaks: dict[str, Any] = field(default_factory=dict)
    log_lines_above_info: list[str] = field(default_factory=list)
    hops: list[dict[str, float]] = field(default_factory=list)
    """Per turn, where the time from the end of the user's speech to the first audio heard went (seconds)."""
    barge_in_hops: dict[str, float] = field(default_factory=dict)
    oac_pump_delay_s: dict[str, float] = field(default_factory=dict)
    false_barge_in: dict[str, Any] = field(default_factory=dict)
    jitter_buffer_delay_s: dict[str, float] = field(default_factory=dict)
    """The browser's audio jitter buffer delay over 500 ms intervals: at the first answer, at the end, the most."""
    """How long microphone chunks waited in OpenAvatarChat between its WebRTC track and the handler."""
    failures: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------- processes


def process_tree_children(pid: int) -> set[int]:
    """The direct children of ``pid`` (all its threads)."""
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            children.update(int(c) for c in (task / "children").read_text().split())
    return children


POOL_THREADS = re.compile(r"^(ThreadPoolExecutor-|AnyIO worker thread|asyncio_|uvloop_|e2e-thread-list)")
"""Threads of the server's own pools, which stay alive idle after a session: not the session's."""


def process_state(pid: int, threads_file: Path) -> dict[str, Any]:
    """Children, Python threads (beside the pools') and memfd mappings of ``pid``: what a session must give back."""
    fds = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            fds.append(os.readlink(fd))
    time.sleep(0.6)  # a fresh thread list
    names = json.loads(threads_file.read_text())
    return {
        "children": sorted(process_tree_children(pid)),
        "threads": sorted(name for name in names if not POOL_THREADS.match(name)),
        "os_threads": len(list(Path(f"/proc/{pid}/task").iterdir())),
        "memfds": sum(1 for target in fds if target.startswith("/memfd:")),
    }


class LoggedProcess:
    """A subprocess whose output goes to a file that can be waited on."""

    def __init__(self, args: list[str], log: Path, **kwargs: Any) -> None:
        self.log = log
        self.handle = log.open("wb")
        self.proc = subprocess.Popen(args, stdout=self.handle, stderr=subprocess.STDOUT, **kwargs)

    def text(self) -> str:
        """Everything the process has written so far."""
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match[str]:
        """The first match of ``pattern`` in the output, waiting up to ``timeout_s``; `Failed` otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text(), re.MULTILINE)
            if found:
                return found
            if self.proc.poll() is not None:
                raise Failed(f"{self.log.name}: the process exited ({self.proc.returncode}) before /{pattern}/")
            time.sleep(0.1)
        raise Failed(f"{self.log.name}: no /{pattern}/ within {timeout_s:.0f} s")

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 20.0) -> None:
        """Ask the process to end with ``sig``; kill it if it has not within ``timeout_s``."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.handle.close()


# ------------------------------------------------------------------------------------------------------ set-up


def user_wav(out: Path) -> tuple[np.ndarray, list[Turn], float]:
    """The user's side: the demo's three utterances in a synthetic voice after `LEAD_S` of silence, and a click.

    The click (`CLICK_S` long, `CLICK_AFTER_S` after the first utterance: during the first answer) is the false
    barge-in: loud enough for the handler's voice detector, too short for Nova Sonic's. Returns the audio, the turns
    and where the click is (WAV seconds).
    """
    from novabridge.demo import DEMO_TURNS, demo_user_audio, write_wav

    speech = demo_user_audio()
    audio = np.concatenate([np.zeros(round(LEAD_S * RATE), np.int16), speech])
    segments = analysis.voice_segments(audio, RATE)
    if len(segments) != len(DEMO_TURNS):
        raise Failed(f"the user WAV has {len(segments)} utterances, the script {len(DEMO_TURNS)}")
    turns = [
        Turn(user_text=said, answer_text=answer, wav_start_s=s.start_s, wav_end_s=s.end_s)
        for (said, answer), s in zip(DEMO_TURNS, segments, strict=True)
    ]
    click_s = turns[0].wav_end_s + CLICK_AFTER_S
    start = round(click_s * RATE)
    click = np.sin(np.arange(round(CLICK_S * RATE)) * 2 * np.pi * 900 / RATE) * 0.5 * 32767
    audio[start : start + len(click)] = click.astype(np.int16)
    write_wav(out / "user.wav", audio, RATE)
    return audio, turns, click_s


def novabridge(*args: str, env: dict[str, str]) -> str:
    """Run a ``novabridge`` command of this environment; its output, or `Failed` with it."""
    done = subprocess.run(
        [sys.executable, "-m", "novabridge", *args], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise Failed(f"novabridge {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def prepare_checkout(oac_dir: Path, out: Path, worker_python: str, env: dict[str, str]) -> Path:
    """A copy of the user's OAC checkout set up as docs/openavatarchat.md says (the original is never written to)."""
    checkout = out / "openavatarchat"
    shutil.copytree(oac_dir, checkout, ignore=shutil.ignore_patterns("__pycache__"))
    novabridge("openavatarchat", "install", str(checkout), "--worker-python", worker_python, "--emulator", env=env)
    config = checkout / "config" / "chat_with_nova_sonic.yaml"
    text = config.read_text()
    # The run's own choices: the emulator's voice, a port known in advance, one spare worker to count.
    text = re.sub(r"(?m)^(\s+spare_workers:) \d+", rf"\1 {SPARE_WORKERS}", text)
    text = re.sub(r"(?m)^(\s+port:) \d+", rf"\1 {PORT}", text)
    # Per-hop timings of the handler, for the latency breakdown.
    handler = "        module: nova_sonic/handler_novasonic\n"
    text = text.replace(handler, f'{handler}        trace_file: "{out / "trace.jsonl"}"\n')
    config.write_text(text)
    return config


@contextlib.contextmanager
def emulator(out: Path, worker_python: str, env: dict[str, str]) -> Iterator[Path]:
    """``novabridge emulator`` with the script's answers, run from this (3.11) environment on the worker's Python."""
    from novabridge.demo import DEMO_TURNS

    scenario = out / "scenario.json"
    scenario.write_text(json.dumps({"turns": [{"user": u, "assistant": a} for u, a in DEMO_TURNS]}))
    records = out / "recordings"
    args = ["--worker-python", worker_python, "--scenario", str(scenario), "--record-dir", str(records)]
    args += ["--endpointing", str(ENDPOINTING_S), "--think", str(THINK_S)]
    process = LoggedProcess([sys.executable, "-m", "novabridge", "emulator", *args], out / "emulator.log", env=env)
    try:
        process.wait_for(r'"endpoint_uri"', 60)
        yield records
    finally:
        process.stop(signal.SIGTERM)


@contextlib.contextmanager
def oac_server(checkout: Path, config: Path, out: Path, env: dict[str, str]) -> Iterator[LoggedProcess]:
    """OpenAvatarChat's own server, ``src/demo.py``, on the copy of the checkout."""
    server_env = dict(env, PYTHONUNBUFFERED="1", NOVABRIDGE_E2E_THREADS=str(out / "server-threads.json"))
    args = [sys.executable, "src/demo.py", "--config", str(config)]
    process = LoggedProcess(args, out / "server.log", cwd=checkout, env=server_env)
    try:
        process.wait_for(r"Uvicorn running on", 120)
        yield process
    finally:
        process.stop(signal.SIGINT, 30)


def wait_for_spares(pid: int, threads_file: Path, timeout_s: float = 60) -> dict[str, Any]:
    """The server's state once its warm workers are up and it has settled."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = process_state(pid, threads_file)
        if len(state["children"]) >= SPARE_WORKERS:
            time.sleep(1.0)
            return process_state(pid, threads_file)
        time.sleep(0.2)
    raise Failed(f"the server has no warm worker after {timeout_s:.0f} s")


# ----------------------------------------------------------------------------------------------------- browser


def converse(chromium: str, wav: Path, duration_s: float, out: Path, during: Callable[[], None]) -> dict[str, Any]:
    """Open OAC's page as a user, talk with the fake microphone for ``duration_s``, close the page; the probe's log.

    ``during`` is called once the conversation is over, before the page is closed.
    """
    from playwright.sync_api import sync_playwright

    flags = [
        "--no-sandbox",  # root in a container: Chromium's sandbox needs user namespaces it may not have
        "--use-fake-ui-for-media-stream",  # grant the microphone without a prompt
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        "--allow-loopback-in-peer-connection",  # ICE over 127.0.0.1, the only address in the namespace
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--autoplay-policy=no-user-gesture-required",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=flags)
        page = browser.new_page()
        page.add_init_script(path=str(HERE / "page_probe.js"))
        page.goto(f"http://127.0.0.1:{PORT}/")
        page.click(".access-wrap", timeout=30_000)  # OAC's two clicks: allow devices, start the chat
        page.click(".chat-btn.start-chat", timeout=30_000)
        page.wait_for_function(
            "() => (window.__novabridgeProbe || {events: []}).events.some(e => e[1] === 'pc-connected')",
            timeout=30_000,
        )
        started = page.evaluate("() => window.__novabridgeProbe.mic.length ? window.__novabridgeProbe.mic[0][0] : 0")
        page.wait_for_function(
            f"() => window.__novabridgeProbe.mic.length && "
            f"window.__novabridgeProbe.mic.at(-1)[0] - {started} > {duration_s * 1000}",
            timeout=(duration_s + 30) * 1000,
            polling=500,
        )
        page.screenshot(path=str(out / "page.png"))
        probe: dict[str, Any] = page.evaluate("() => window.__novabridgeProbe")
        # The transcript, as a user reads it: the page's subtitle button (the last of its side actions) shows it.
        page.locator(".action").last.click()
        page.wait_for_selector(".chat-records", timeout=5_000)
        probe["page_text"] = page.inner_text(".chat-records")
        page.screenshot(path=str(out / "page-transcript.png"))
        during()
        # The user ends the chat and closes the page. (A page closed without stopping is noticed by OAC only when
        # ICE consent expires, about 30 s later.)
        page.click(".chat-btn.stop-chat", timeout=10_000)
        page.wait_for_timeout(1000)  # the page closes its peer connection 500 ms after stopping its tracks
        page.close()
        browser.close()
    return probe


# ---------------------------------------------------------------------------------------------------- analysis


def heard_rows(probe: dict[str, Any]) -> list[tuple[float, float, float]]:
    """The page's record of what it played, as ``(seconds on the page's clock, rms, playing)``."""
    return [(t / 1000, rms, playing) for t, rms, playing in probe["heard"]]


def page_clock_turns(probe: dict[str, Any], audio: np.ndarray, turns: list[Turn], results: Results) -> None:
    """Put the WAV's turns on the page's clock and find what the page played after each."""
    mic = np.asarray(probe["mic"], dtype=np.float64)
    offset, correlation = analysis.align(
        analysis.envelope(audio, RATE), mic[:, 0] / 1000, mic[:, 1], max_lag_s=LEAD_S + 10
    )
    if correlation < 0.8:
        raise Failed(f"the page's microphone does not follow the WAV (correlation {correlation:.2f})")
    segments = analysis.heard_segments(heard_rows(probe))
    results.wav_to_page_s = offset
    for index, turn in enumerate(turns):
        turn.speech_start_s = turn.wav_start_s + offset
        turn.speech_end_s = turn.wav_end_s + offset
        answer = analysis.first_after(segments, turn.speech_end_s)
        turn.first_heard_s = answer.start_s if answer is not None else None
        if index > 0:
            previous = turns[index - 1]
            playing = previous.first_heard_s is not None and previous.first_heard_s < turn.speech_start_s
            quiet = analysis.quiet_after(segments, turn.speech_start_s) if playing else None
            if quiet is not None and quiet > turn.speech_start_s:  # the answer was playing when the user spoke
                previous.interrupted = True
                turn.quiet_s = quiet
                results.barge_in_to_quiet_s = quiet - turn.speech_start_s
    results.turns = turns


def read_trace(path: Path) -> list[dict[str, Any]]:
    """The handler's per-hop trace (`novabridge.openavatarchat.trace`), in order."""
    if not path.exists():
        raise Failed(f"the handler wrote no trace to {path}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def hop_breakdown(trace: list[dict[str, Any]], probe: dict[str, Any], audio: np.ndarray, results: Results) -> None:
    """Split each turn's latency into the hops before, inside and after the handler, on the wall clock.

    The page's clock becomes the wall clock through ``performance.timeOrigin``; the handler stamps with
    ``time.time()``. The microphone chunks the handler received are placed in the user's WAV by their content
    (aligned like the page's meter), so the handler's moment for any WAV position is known.
    """
    mics = [e for e in trace if e["event"] == "mic"]
    if not mics or not results.turns:
        raise Failed("the trace has no microphone chunks")
    page_to_wall = probe["timeOrigin"] / 1000
    jitter = np.asarray(probe["jitter"], dtype=np.float64).reshape(-1, 4)
    emitted = np.diff(jitter[:, 3])
    if emitted.size and (emitted > 0).any():
        recent = np.diff(jitter[:, 1])[emitted > 0] / emitted[emitted > 0]
        results.jitter_buffer_delay_s = {
            "first": float(recent[0]),
            "last": float(recent[-1]),
            "max": float(recent.max()),
        }
    # Chunk i holds WAV samples [start_i, start_i + n_i) where start_i = cumulative + shift; find shift by content.
    sizes = np.array([e["n"] for e in mics])
    ends = np.cumsum(sizes)
    rms = np.array([e["rms"] for e in mics])
    arrival = np.array([e["t"] for e in mics])
    shift_s, correlation = analysis.align(
        analysis.envelope(audio, RATE), (ends - sizes) / RATE, rms, max_lag_s=LEAD_S + 10
    )
    if correlation < 0.8:
        raise Failed(f"the handler's microphone chunks do not follow the WAV (correlation {correlation:.2f})")

    def at_handler(wav_s: float) -> float:
        """When the handler had the WAV's audio up to ``wav_s``."""
        index = int(np.searchsorted(ends / RATE, wav_s + shift_s, side="left"))
        return float(arrival[min(index, len(arrival) - 1)])

    answers = [e for e in trace if e["event"] == "answer_audio"]
    handed = [e for e in trace if e["event"] == "avatar_audio"]
    for turn in results.turns:
        decided_wav_s = turn.wav_end_s + ENDPOINTING_S  # the audio the service needs to end the turn
        at_mic = page_to_wall + results.wav_to_page_s + decided_wav_s
        at_handler_s = at_handler(decided_wav_s)
        answer = next((e["t"] for e in answers if e["t"] > at_handler_s), None)
        avatar = next((e["t"] for e in handed if answer is not None and e["t"] >= answer), None)
        if answer is None or avatar is None or turn.first_heard_s is None:
            continue
        results.hops.append(
            {
                "browser_to_handler": at_handler_s - at_mic,
                "handler_to_answer_less_think": answer - at_handler_s - THINK_S,
                "pacing": avatar - answer,
                "avatar_to_heard": page_to_wall + turn.first_heard_s - avatar,
                "overhead": (turn.overhead_s or 0.0),
            }
        )
    # OAC stamps each chunk when its WebRTC track delivers it (monotonic, samples since the session's input began);
    # the least gap to the handler's stamp is the clock offset, the rest is the wait in OAC's queues and pumps.
    waits = arrival - np.array([e["ts"] for e in mics]) / RATE
    waits -= waits.min()
    results.oac_pump_delay_s = {"p50": float(np.percentile(waits, 50)), "p99": float(np.percentile(waits, 99))}
    barge = next((t for t in results.turns if t.quiet_s is not None), None)
    if barge is not None and barge.quiet_s is not None:
        onset_wall = page_to_wall + barge.speech_start_s
        onset_at_handler = at_handler(barge.wav_start_s)
        pause = next((e["t"] for e in trace if e["event"] == "local_pause" and e["t"] > onset_wall), None)
        results.barge_in_hops = {
            "browser_to_handler": onset_at_handler - onset_wall,
            "quiet": barge.quiet_s - barge.speech_start_s,
        }
        if pause is not None:
            results.barge_in_hops["handler_to_pause"] = pause - onset_at_handler
            results.barge_in_hops["pause_to_quiet"] = page_to_wall + barge.quiet_s - pause


def check_false_barge_in(trace: list[dict[str, Any]], probe: dict[str, Any], click_s: float, results: Results) -> None:
    """The click during answer 1: if the handler paused for it, the pause lifted and answer 1 went on uncut."""
    first, second = results.turns[0], results.turns[1]
    click_wall = probe["timeOrigin"] / 1000 + results.wav_to_page_s + click_s
    pauses = [e["t"] for e in trace if e["event"] == "local_pause" and click_wall - 0.5 < e["t"] < click_wall + 1.0]
    resumes = [e["t"] for e in trace if e["event"] == "local_resume" and pauses and e["t"] > pauses[0]]
    heard = analysis.heard_segments(heard_rows(probe), min_gap_s=1.0)
    answer = next((s for s in heard if first.first_heard_s is not None and s.end_s > first.first_heard_s), None)
    results.false_barge_in = {
        "paused": bool(pauses),
        "resumed": bool(resumes),
        "pause_s": (resumes[0] - pauses[0]) if pauses and resumes else None,
        "answer_1_heard_s": (answer.end_s - answer.start_s) if answer is not None else None,
    }
    if first.interrupted:
        results.failures.append("the click cut answer 1: a false barge-in ended it")
    if pauses and not resumes:
        results.failures.append("the handler paused answer 1 for the click and never resumed it")
    if answer is None or answer.end_s > second.speech_start_s:
        results.failures.append("answer 1 was not heard whole before the user's next turn")


def check_turns(probe: dict[str, Any], results: Results) -> None:
    """Each answer heard soon and shown with its question; the barge-in cut answer 2 and the page went quiet."""
    page_text = probe["page_text"]
    for number, turn in enumerate(results.turns, 1):
        if turn.latency_s is None or turn.latency_s > ANSWER_BOUND_S:
            results.failures.append(f"turn {number}: no answer heard in the page within {ANSWER_BOUND_S} s")
        if turn.user_text not in page_text:
            results.failures.append(f"turn {number}: the user's transcript is not on the page: {turn.user_text!r}")
        sentences = turn.answer_text.split(". ")
        if sentences[0] not in page_text:
            results.failures.append(f"turn {number}: the answer is not on the page: {sentences[0]!r}")
        if turn.interrupted and len(sentences) > 1 and sentences[-1] in page_text:  # cut a second in: never said
            results.failures.append(f"turn {number}: words the avatar never said are on the page: {sentences[-1]!r}")
    interrupted = [n for n, t in enumerate(results.turns, 1) if t.interrupted]
    if interrupted != [2]:
        results.failures.append(f"the barge-in should cut answer 2; answers cut: {interrupted}")
    if results.barge_in_to_quiet_s is None or results.barge_in_to_quiet_s > QUIET_BOUND_S:
        shown = "never" if results.barge_in_to_quiet_s is None else f"{results.barge_in_to_quiet_s * 1000:.0f} ms"
        results.failures.append(f"the page went quiet {shown} after the barge-in (bound {QUIET_BOUND_S * 1000:.0f} ms)")


def check_recording(records: Path, audio: np.ndarray, turns: list[Turn], results: Results) -> None:
    """The emulator received each utterance that left the browser, in order: found by correlation, not trusted."""
    streams = sorted(records.glob("stream-*-user.pcm"))
    if len(streams) != 1:
        results.failures.append(f"expected one stream in the emulator's recordings, found {len(streams)}")
        return
    received = np.frombuffer(streams[0].read_bytes(), dtype="<i2")
    position = 0
    previous_lag: int | None = None
    for number, turn in enumerate(turns, 1):
        start, end = round(turn.wav_start_s * RATE), round(turn.wav_end_s * RATE)
        utterance = audio[start:end]
        found, score = analysis.locate(utterance, received, RATE, search_from=position)
        lag = found - start
        results.recording.append({"turn": number, "at_s": found / RATE, "correlation": round(score, 3)})
        if score < 0.5:
            results.failures.append(
                f"turn {number}: the emulator's recording does not hold the utterance ({score:.2f})"
            )
        if previous_lag is not None and abs(lag - previous_lag) > 0.2 * RATE:
            results.failures.append(f"turn {number}: the utterance moved {abs(lag - previous_lag) / RATE:.2f} s")
        previous_lag = lag
        position = found + len(utterance) // 2


def check_teardown(server: LoggedProcess, states: dict[str, dict[str, Any]], results: Results) -> None:
    """Closing the page ends the session and gives back what it took; nothing above INFO was logged.

    ``states`` holds the server's `process_state` before the session ("baseline") and during it ("session").
    """
    server.wait_for(r"chat session stopped", 15)
    time.sleep(2.0)  # the pool refills its spare
    states["after"] = after = process_state(server.proc.pid, server.log.with_name("server-threads.json"))
    results.leaks = states
    baseline, session = states["baseline"], states["session"]
    if not any(name.startswith("novasonic-") for name in session["threads"]):
        results.failures.append(f"no Nova Sonic session thread while the page was open: {session['threads']}")
    # The session took the baseline's warm worker and the pool started a new spare: only the new one may be left.
    if set(baseline["children"]) & set(after["children"]) or len(after["children"]) != SPARE_WORKERS:
        results.failures.append(f"workers: {baseline['children']} before the session, {after['children']} after")
    if not set(baseline["children"]) <= set(session["children"]):
        results.failures.append("the session was not served by the warm worker")
    if after["threads"] != baseline["threads"]:
        results.failures.append(f"threads before the session {baseline['threads']}, after {after['threads']}")
    if after["memfds"] > baseline["memfds"]:
        results.failures.append(f"memfds: {baseline['memfds']} before the session, {after['memfds']} after")
    text = server.text()
    session_log = text[text.find("Starting session") :]
    results.log_lines_above_info = [line for line in session_log.splitlines() if LOG_LEVELS_ABOVE_INFO.search(line)]
    if results.log_lines_above_info:
        results.failures.append(f"{len(results.log_lines_above_info)} log lines above INFO during the session")


# ------------------------------------------------------------------------------------------------------ report


def ms(seconds: float | None) -> str:
    """Seconds shown in whole milliseconds."""
    return "n/a" if seconds is None else f"{seconds * 1000:.0f} ms"


def report(results: Results, out: Path) -> str:
    """Write `report.md` (returned) and `results.json`."""
    lines = [
        "| turn | user | end of speech to first audio heard | less emulator endpointing + think | cut by the user |",
        "|---|---|--:|--:|---|",
    ]
    for number, turn in enumerate(results.turns, 1):
        latency = f"{turn.latency_s * 1000:.0f} ms" if turn.latency_s is not None else "none"
        overhead = f"{turn.overhead_s * 1000:.0f} ms" if turn.overhead_s is not None else "none"
        lines.append(
            f"| {number} | {turn.user_text} | {latency} | {overhead} | {'yes' if turn.interrupted else 'no'} |"
        )
    if results.hops:
        lines += [
            "",
            (
                "| turn | browser to handler | handler to answer audio (bridge, SDK, service; less think) | pacing "
                "| handler to heard in the page | overhead |"
            ),
            "|---|--:|--:|--:|--:|--:|",
        ]
        for number, hop in enumerate(results.hops, 1):
            lines.append(
                f"| {number} | {ms(hop['browser_to_handler'])} | {ms(hop['handler_to_answer_less_think'])} "
                f"| {ms(hop['pacing'])} | {ms(hop['avatar_to_heard'])} | {ms(hop['overhead'])} |"
            )
    lines.append("")
    lines.append(f"User's voice onset over answer 2 to quiet in the page: {ms(results.barge_in_to_quiet_s)}")
    barge = results.barge_in_hops
    if barge:
        lines.append(
            f"  browser to handler {ms(barge.get('browser_to_handler'))}, handler to pause "
            f"{ms(barge.get('handler_to_pause'))}, pause to quiet in the page {ms(barge.get('pause_to_quiet'))}"
        )
    click = results.false_barge_in
    if click:
        lines.append(
            f"Click during answer 1 (a false barge-in): paused {'yes' if click['paused'] else 'no'}, resumed "
            f"{'yes' if click['resumed'] else 'no'} after {ms(click['pause_s'])}; answer 1 heard for "
            f"{ms(click['answer_1_heard_s'])}"
        )
    pumps = results.oac_pump_delay_s
    if pumps:
        lines.append(
            f"Microphone chunks waiting in OpenAvatarChat (track to handler): p50 {ms(pumps['p50'])}, "
            f"p99 {ms(pumps['p99'])}"
        )
    buffer = results.jitter_buffer_delay_s
    if buffer:
        lines.append(
            f"Browser jitter buffer delay: {ms(buffer['first'])} at first, {ms(buffer['last'])} at the end, "
            f"{ms(buffer['max'])} at most"
        )
    lines.append(f"Emulator: endpointing {ENDPOINTING_S * 1000:.0f} ms, think {THINK_S * 1000:.0f} ms")
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    (out / "results.json").write_text(json.dumps(asdict(results), indent=1) + "\n")
    return text


def draw(results: Results, probe: dict[str, Any], audio: np.ndarray, out: Path) -> None:
    """The run on one time axis (the page's clock): the user's voice, what the page played, latencies, the barge-in."""
    from novabridge.timeline import Track, TurnMark, draw_timeline

    if not results.turns:
        return
    offset = results.wav_to_page_s
    heard = np.asarray(probe["heard"], dtype=np.float64).reshape(-1, 3)
    start = float(heard[0, 0]) / 1000
    count = int((heard[-1, 0] / 1000 - start) / analysis.HOP_S) + 1
    played = analysis.resample_series(heard[:, 0] / 1000, heard[:, 1] * heard[:, 2], start, count)
    marks = []
    for index, turn in enumerate(results.turns):
        following = results.turns[index + 1] if index + 1 < len(results.turns) else None
        cut = following is not None and turn.interrupted
        marks.append(
            TurnMark(
                speech_end_s=turn.speech_end_s,
                first_audio_s=turn.first_heard_s,
                user_text=turn.user_text,
                assistant_text=turn.answer_text,
                barge_in_s=following.speech_start_s if cut and following is not None else None,
                quiet_s=following.quiet_s if cut and following is not None else None,
            )
        )
    draw_timeline(
        out / "timeline.png",
        Track(audio, RATE, start_s=offset),
        Track(played.astype(np.float32), round(1 / analysis.HOP_S), start_s=start),
        marks,
        title="OpenAvatarChat in Chromium: the fake microphone and what the page played (page clock)",
        notes=[f"emulator: endpointing {ENDPOINTING_S * 1000:.0f} ms, think {THINK_S * 1000:.0f} ms"],
    )


def main() -> int:
    """Run it all; 0 if every check passed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--oac-dir", type=Path, required=True, help="an OpenAvatarChat checkout (left unchanged)")
    parser.add_argument("--worker-python", required=True, help="a Python >= 3.12 with novabridge[sonic,emulator]")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--out", type=Path, default=Path("out/oac-e2e"))
    args = parser.parse_args()
    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    home = out / "home"  # the emulator publishes its endpoint under ~/.novabridge: this run's own home
    home.mkdir()
    env = dict(os.environ, HOME=str(home))
    results = Results()
    audio, turns, click_s = user_wav(out)
    config = prepare_checkout(args.oac_dir.resolve(), out, args.worker_python, env)
    try:
        with (
            emulator(out, args.worker_python, env) as records,
            oac_server(config.parent.parent, config, out, env) as server,
        ):
            threads_file = out / "server-threads.json"
            states = {"baseline": wait_for_spares(server.proc.pid, threads_file)}

            def during() -> None:
                states["session"] = process_state(server.proc.pid, threads_file)

            probe = converse(args.chromium, out / "user.wav", len(audio) / RATE + TAIL_S, out, during)
            (out / "probe.json").write_text(json.dumps(probe))
            check_teardown(server, states, results)
        page_clock_turns(probe, audio, turns, results)
        check_turns(probe, results)
        check_recording(records, audio, turns, results)
        trace = read_trace(out / "trace.jsonl")
        hop_breakdown(trace, probe, audio, results)
        check_false_barge_in(trace, probe, click_s, results)
        draw(results, probe, audio, out)
    except Failed as failure:
        results.failures.append(str(failure))
    print(report(results, out))
    for message in results.failures:
        print(f"FAILED: {message}", file=sys.stderr)
    for line in results.log_lines_above_info:
        print(f"  logged: {line}", file=sys.stderr)
    print(f"wrote {out}/report.md, results.json, timeline.png, page.png; logs in {out}", flush=True)
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main())
