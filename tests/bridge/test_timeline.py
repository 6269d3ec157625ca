"""`draw_timeline`: one readable PNG of a conversation, whatever the run managed to mark."""

import math
import struct
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from novabridge.timeline import Track, TurnMark, draw_timeline

LATENCY_RGB = (0x2A, 0x8A, 0x4A)
BARGE_IN_RGB = (0xC0, 0x39, 0x2B)
ASSISTANT_RGB = (0xD0, 0x74, 0x2A)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def pixels_of(path: Path, rgb: tuple[int, int, int]) -> int:
    """How many pixels are (nearly) this colour."""
    image = np.asarray(imread(str(path)))[..., :3] * 255
    return int(np.sum(np.all(np.abs(image - np.array(rgb)) < 12, axis=-1)))


def voice(seconds: float, rate: int, level: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return np.round(np.sin(2 * np.pi * 180 * t) * level * 32767).astype(np.int16)


def conversation(rate: int = 16000, out_rate: int = 24000) -> tuple[Track, Track]:
    user = np.concatenate([np.zeros(rate // 2, np.int16), voice(1.5, rate), np.zeros(4 * rate, np.int16)])
    assistant = np.concatenate([np.zeros(round(2.8 * out_rate), np.int16), voice(2.0, out_rate)])
    return Track(user, rate), Track(assistant, out_rate)


def test_a_conversation_is_a_png_of_a_sensible_size(tmp_path: Path) -> None:
    user, assistant = conversation()
    path = tmp_path / "timeline.png"
    turn = TurnMark(speech_end_s=2.0, first_audio_s=2.8, user_text="Hello there", assistant_text="Hi, how can I help?")
    draw_timeline(path, user, assistant, [turn], title="one turn", notes=["a note"])
    width, height = png_size(path)
    assert 800 <= width <= 2400
    assert 400 <= height <= 1200
    assert width > height
    assert pixels_of(path, LATENCY_RGB) > 50  # the latency bracket and its label
    assert pixels_of(path, ASSISTANT_RGB) > 500  # the answer's waveform
    assert pixels_of(path, BARGE_IN_RGB) == 0  # no barge-in: nothing red


def test_a_barge_in_is_drawn_in_red(tmp_path: Path) -> None:
    user, assistant = conversation()
    path = tmp_path / "timeline.png"
    turn = TurnMark(speech_end_s=2.0, first_audio_s=2.8, barge_in_s=4.0, quiet_s=4.12)
    draw_timeline(path, user, assistant, [turn], title="barge-in")
    assert pixels_of(path, BARGE_IN_RGB) > 50


def test_no_turns_and_an_empty_assistant_still_draw(tmp_path: Path) -> None:
    user, _ = conversation()
    path = tmp_path / "timeline.png"
    draw_timeline(path, user, Track(np.zeros(0, np.int16), 24000), [], title="nothing answered")
    assert png_size(path)[0] >= 800
    assert pixels_of(path, LATENCY_RGB) == 0
    assert pixels_of(path, ASSISTANT_RGB) < 200  # a faint lane line and "no audio", no waveform


def test_a_turn_without_first_audio_gets_no_latency_bracket(tmp_path: Path) -> None:
    user, _ = conversation()
    with_answer, without_answer = tmp_path / "answered.png", tmp_path / "unanswered.png"
    silent = Track(np.zeros(0, np.float32), 24000)
    draw_timeline(with_answer, user, silent, [TurnMark(speech_end_s=2.0, first_audio_s=2.8)], title="t")
    draw_timeline(without_answer, user, silent, [TurnMark(speech_end_s=2.0, user_text="Anyone?")], title="t")
    # Only the dotted end-of-speech line and "no answer": far less green than a bracket with its latency label.
    assert 0 < pixels_of(without_answer, LATENCY_RGB) < pixels_of(with_answer, LATENCY_RGB)


def test_tracks_on_another_clock_and_of_other_types_draw(tmp_path: Path) -> None:
    # A browser's clock: seconds since the page loaded; float32 audio as the page has it.
    rng = np.random.default_rng(3)
    user = Track(rng.normal(0, 0.05, 3 * 48000).astype(np.float32).reshape(1, -1), 48000, start_s=61.25)
    assistant = Track((voice(1.0, 24000).astype(np.float32) / 32768), 24000, start_s=63.0)
    path = tmp_path / "browser.png"
    turns = [TurnMark(speech_end_s=62.5, first_audio_s=63.0), TurnMark(first_audio_s=63.5, assistant_text="more")]
    draw_timeline(path, user, assistant, turns, title="browser", notes=["a long note " * 40])
    assert png_size(path)[1] > 500  # the wrapped note adds lines


def test_turn_mark_latency_and_talk_over() -> None:
    turn = TurnMark(speech_end_s=1.0, first_audio_s=1.75, barge_in_s=3.0, quiet_s=3.25)
    assert turn.latency_s == pytest.approx(0.75)
    assert turn.talk_over_s == pytest.approx(0.25)
    assert TurnMark(speech_end_s=1.0).latency_s is None
    assert TurnMark(barge_in_s=1.0).talk_over_s is None
    assert Track(np.zeros(48000, np.int16), 16000, start_s=2.0).end_s == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: Track(np.zeros(10, np.int32), 16000), TypeError),
        (lambda: Track(np.zeros((2, 10), np.int16), 16000), ValueError),
        (lambda: Track(np.zeros(10, np.int16), 0), ValueError),
        (lambda: Track(np.zeros(10, np.int16), 16000, start_s=math.nan), ValueError),
        (lambda: TurnMark(first_audio_s=math.inf), ValueError),
    ],
)
def test_bad_parts_are_clear_errors(make: object, error: type) -> None:
    with pytest.raises(error):
        make()  # type: ignore[operator]


def test_draw_rejects_what_is_not_a_track_or_a_mark(tmp_path: Path) -> None:
    user, assistant = conversation()
    with pytest.raises(TypeError, match="assistant must be a Track"):
        draw_timeline(tmp_path / "x.png", user, np.zeros(10, np.int16), [], title="t")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="TurnMark"):
        draw_timeline(tmp_path / "x.png", user, assistant, [(1.0, 2.0)], title="t")  # type: ignore[list-item]
    assert not (tmp_path / "x.png").exists()
