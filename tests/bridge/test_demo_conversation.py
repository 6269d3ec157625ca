"""The demo's conversation loop on this interpreter's host, through a real worker to the emulator subprocess."""

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from novabridge.demo import Conversation, converse
from novabridge.emulator.vad import Utterance, find_utterances
from novabridge.host.bridge import SonicBridge
from support.audio import tone
from support.emulator_process import EmulatorProcess
from support.interpreters import python_for

RATE = 16000
SDK_FRAME = 512  # the session sends 32 ms frames at 16 kHz
OUT_RATE = 24000


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), np.int16)


@pytest.fixture
def brief_emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    """Answers of a word, over before the user speaks again."""
    scenario = tmp_path / "brief.json"
    scenario.write_text(json.dumps({"turns": [{"assistant": "Yes."}, {"assistant": "Sure."}]}))
    process = EmulatorProcess(tmp_path / "recordings", "--scenario", str(scenario))
    yield process
    process.stop()


def talk(emulator: EmulatorProcess, audio: np.ndarray, tail_s: float) -> tuple[Conversation, list[Utterance], float]:
    """The conversation, the utterances found in ``audio``, and the worst uplink hop."""
    utterances = find_utterances(audio, RATE)
    with SonicBridge(emulator.config(), worker_python=python_for("312"), host_rate=RATE) as bridge:
        conversation = converse(bridge, audio, utterances, tail_s=tail_s, log=False)
        uplink = bridge.metrics().uplink.samples_s
    assert uplink
    return conversation, utterances, max(uplink)


def test_each_answer_is_timed_from_the_end_of_speech_found_in_the_audio(brief_emulator: EmulatorProcess) -> None:
    audio = np.concatenate([silence(0.3), tone(0.8), silence(1.5), tone(0.6), silence(0.2)])
    # The input ends 20 ms into an SDK frame: a microphone that went mute there would leave that frame waiting.
    audio = np.concatenate([audio, silence(0.02)])[: len(audio) // SDK_FRAME * SDK_FRAME + 320]
    conversation, utterances, worst_uplink_s = talk(brief_emulator, audio, tail_s=2.0)
    assert len(utterances) == 2
    assert len(conversation.turns) == 2
    for report, utterance in zip(conversation.turns, utterances, strict=True):
        mark = report.mark()
        assert mark.speech_end_s == utterance.end_s
        assert mark.latency_s is not None
        # The emulator ends a turn after 300 ms of silence and answers 50 ms later; generous above for a busy host.
        assert 0.25 < mark.latency_s < 3.0
        assert not report.interrupted
        assert mark.barge_in_s is None
    # Every frame of the input left within the bound, the last one too: the microphone went on with silence.
    assert worst_uplink_s < 0.3
    assert len(conversation.microphone) >= len(audio) + round(1.9 * RATE)
    assert np.array_equal(conversation.microphone[: len(audio)], audio)
    # The speaker was silent until the first answer arrived, and played it from then on.
    first = conversation.turns[0].first_audio_s
    assert first is not None
    assert not conversation.speaker[: int(first * OUT_RATE) - 1].any()
    assert conversation.speaker[int(first * OUT_RATE) : int((first + 0.5) * OUT_RATE)].any()


def test_a_barge_in_is_dated_where_the_user_began_and_the_speaker_went_quiet(slow_emulator: EmulatorProcess) -> None:
    # The answer runs for many seconds; the user speaks again 1.2 s into it.
    audio = np.concatenate([silence(0.3), tone(0.8), silence(1.2 + 0.35 + 1.2), tone(0.6), silence(0.5)])
    conversation, utterances, _ = talk(slow_emulator, audio, tail_s=1.5)
    interrupted = [report for report in conversation.turns if report.interrupted]
    assert len(interrupted) == 1
    mark = interrupted[0].mark()
    assert mark.barge_in_s == utterances[1].start_s
    assert mark.first_audio_s is not None
    assert mark.first_audio_s < utterances[1].start_s
    assert mark.talk_over_s is not None
    assert 0.0 <= mark.talk_over_s < 1.5
    assert mark.quiet_s is not None
    # Quiet means quiet: the speaker played nothing of that answer after the flush.
    after_flush = conversation.speaker[int(mark.quiet_s * OUT_RATE) + 1 : int((mark.quiet_s + 0.3) * OUT_RATE)]
    assert not after_flush.any()
    assert interrupted[0].dropped_bytes > 0
