"""The resampler and PCM conversions through the Python API (signal quality is tested in the Rust crate)."""

import math
from typing import Literal

import novabridge as nb
import numpy as np
import pytest
from novabridge import pcm


def _tone(rate: int, freq: float, n: int, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * math.pi * freq * np.arange(n) / rate)).astype(np.float32)


def test_rates_dtypes_and_qualities_are_validated() -> None:
    with pytest.raises(ValueError, match="unsupported sample rate 12345"):
        nb.Resampler(12345, 16000)
    with pytest.raises(ValueError, match="dtype"):
        nb.Resampler(16000, 24000, dtype="int32")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="quality"):
        nb.Resampler(16000, 24000, quality="best")  # type: ignore[arg-type]
    r = nb.Resampler(16000, 24000, dtype="float32", quality="high")
    assert (r.in_rate, r.out_rate, r.dtype, r.quality, r.ratio) == (16000, 24000, "float32", "high", 1.5)
    assert "Resampler(16000, 24000" in repr(r)


@pytest.mark.parametrize(("in_rate", "out_rate"), [(16000, 24000), (24000, 16000), (48000, 16000), (16000, 48000)])
def test_voice_delay_is_at_most_2ms(in_rate: int, out_rate: int) -> None:
    samples, seconds = nb.Resampler(in_rate, out_rate).delay
    assert 0 < seconds <= 0.002
    assert samples == pytest.approx(seconds * out_rate)


PAIRS = [(16000, 24000), (24000, 16000), (48000, 16000), (16000, 48000)]
DESIGN = [("voice", 0.0019896, 100.0), ("high", 0.0059896, 140.0)]
"""Each quality's delay (1.99 ms, 5.99 ms) and the stopband it is designed for (docs/resampler.md)."""


@pytest.mark.parametrize(("quality", "delay_s", "_stopband_db"), DESIGN)
@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_each_quality_delays_as_documented_and_reports_its_delay_exactly(
    in_rate: int, out_rate: int, quality: Literal["voice", "high"], delay_s: float, _stopband_db: float
) -> None:
    resampler = nb.Resampler(in_rate, out_rate, dtype="float32", quality=quality)
    samples, seconds = resampler.delay
    assert seconds == pytest.approx(delay_s, abs=1e-7)
    assert samples == pytest.approx(seconds * out_rate)
    # The response to an impulse is the filter itself: its centre of mass is the delay the output is behind by.
    impulse = np.zeros(in_rate // 10, np.float32)
    impulse[0] = 1.0
    response = resampler.process(impulse).astype(np.float64)
    assert (np.arange(len(response)) * response).sum() / response.sum() == pytest.approx(samples, abs=0.01)


@pytest.mark.parametrize(("quality", "_delay_s", "stopband_db"), DESIGN)
@pytest.mark.parametrize(("in_rate", "out_rate", "freq"), [(24000, 16000, 9000.0), (48000, 16000, 10000.0)])
def test_each_quality_rejects_what_would_alias_by_its_designed_stopband(
    in_rate: int, out_rate: int, freq: float, quality: Literal["voice", "high"], _delay_s: float, stopband_db: float
) -> None:
    # A full-scale tone above the new Nyquist frequency: whatever comes out is aliasing.
    resampler = nb.Resampler(in_rate, out_rate, dtype="float32", quality=quality)
    out = resampler.process(_tone(in_rate, freq, in_rate, amplitude=1.0)).astype(np.float64)
    settled = out[len(out) // 4 :]
    level_db = 20 * math.log10(float(np.sqrt(np.mean(settled**2))) / (1 / math.sqrt(2)))
    assert level_db <= -stopband_db


def test_layout_and_dtype_are_kept() -> None:
    r = nb.Resampler(16000, 24000)
    flat = r.process(np.zeros(320, np.int16))
    assert flat.dtype == np.int16
    assert flat.shape == (480,)
    row = r.process(np.zeros((1, 320), np.int16))
    assert row.dtype == np.int16
    assert row.shape == (1, 480)
    assert r.process(np.zeros(0, np.int16)).shape == (0,)
    f = nb.Resampler(24000, 16000, dtype="float32").process(np.zeros((1, 480), np.float32))
    assert f.dtype == np.float32
    assert f.shape == (1, 320)


def test_bad_input_raises_and_leaves_the_state_unchanged() -> None:
    audio = (_tone(16000, 440.0, 3200) * 20000).astype(np.int16)
    reference = nb.Resampler(16000, 24000).process(audio)
    r = nb.Resampler(16000, 24000)
    first = r.process(audio[:1600])
    with pytest.raises(TypeError, match="int16"):
        r.process(audio[1600:].astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        r.process(np.zeros((2, 160), np.int16))
    with pytest.raises(TypeError):
        r.process("not audio")  # type: ignore[arg-type]
    rest = r.process(audio[1600:])
    assert np.array_equal(np.concatenate([first, rest]), reference)

    f = nb.Resampler(16000, 24000, dtype="float32")
    before = f.process(_tone(16000, 440.0, 160))
    bad = _tone(16000, 440.0, 160)
    bad[17] = np.nan
    with pytest.raises(ValueError, match="sample 17 is not finite"):
        f.process(bad)
    bad[17] = np.inf
    with pytest.raises(ValueError, match="not finite"):
        f.process(bad)
    fresh = nb.Resampler(16000, 24000, dtype="float32")
    tone = _tone(16000, 440.0, 160)
    expected = np.concatenate([fresh.process(tone), fresh.process(tone)])
    assert np.array_equal(np.concatenate([before, f.process(tone)]), expected)


@pytest.mark.parametrize(("in_rate", "out_rate"), [(16000, 24000), (24000, 16000), (44100, 16000), (8000, 48000)])
def test_output_is_identical_however_the_input_is_split(in_rate: int, out_rate: int) -> None:
    rng = np.random.default_rng(7)
    audio = (rng.standard_normal(in_rate // 2) * 3000).astype(np.int16)
    whole = nb.Resampler(in_rate, out_rate).process(audio)
    r = nb.Resampler(in_rate, out_rate)
    cuts = np.sort(rng.integers(0, len(audio), 40))
    pieces = [r.process(chunk) for chunk in np.split(audio, cuts)]
    assert np.array_equal(np.concatenate(pieces), whole)
    one_by_one = nb.Resampler(in_rate, out_rate)
    single_samples = np.concatenate([one_by_one.process(audio[i : i + 1]) for i in range(800)])
    assert np.array_equal(single_samples, nb.Resampler(in_rate, out_rate).process(audio[:800]))


def test_every_20ms_frame_returns_its_share_within_one() -> None:
    r = nb.Resampler(44100, 16000)
    for _ in range(100):
        out = r.process(np.zeros(882, np.int16))
        assert abs(len(out) - 882 * 16000 / 44100) <= 1


def test_a_tone_survives_and_flush_releases_the_tail() -> None:
    r = nb.Resampler(16000, 24000, dtype="float32")
    out = np.concatenate([r.process(frame) for frame in np.split(_tone(16000, 1000.0, 16000), 50)])
    delay = r.delay[0]
    n = np.arange(len(out))
    expected = 0.5 * np.sin(2 * math.pi * 1000.0 * (n - delay) / 24000)
    settled = slice(200, None)
    snr = 10 * np.log10(np.sum(expected[settled] ** 2) / np.sum((out[settled] - expected[settled]) ** 2))
    assert snr >= 90
    tail = r.flush()
    assert tail.ndim == 1
    # What the delay held back is the tone's last `delay` samples: with them the output holds the whole tone.
    assert len(tail) >= math.ceil(delay)
    whole = np.concatenate([out, tail])
    n = np.arange(len(whole))
    expected = 0.5 * np.sin(2 * math.pi * 1000.0 * (n - delay) / 24000)
    released = slice(len(out), len(out) + math.floor(delay) - 24)  # short of the tone's abrupt end, which rings
    error = whole[released] - expected[released]
    # 75 dB here: the edge's ringing reaches back into these samples (an unrelated tail would give about 0 dB).
    assert 10 * np.log10(np.sum(expected[released] ** 2) / np.sum(error**2)) >= 70
    r.reset()
    assert np.array_equal(r.process(np.zeros(160, np.float32)), np.zeros(240, np.float32))


def test_int16_saturates() -> None:
    square = np.where((np.arange(1600) // 20) % 2 == 0, 32767, -32768).astype(np.int16)
    out = nb.Resampler(16000, 24000).process(square)
    assert out.max() == 32767
    assert out.min() == -32768


def test_pcm_conversions() -> None:
    ints = np.array([[-32768, -16384, 0, 16384, 32767]], np.int16)
    floats = pcm.to_float32(ints)
    assert floats.dtype == np.float32
    assert floats.shape == (1, 5)
    assert floats[0, 0] == -1.0
    assert np.array_equal(pcm.to_int16(floats), ints)
    clipped = pcm.to_int16(np.array([1.5, -2.0, 0.25], np.float32))
    assert clipped.tolist() == [32767, -32768, 8192]
    with pytest.raises(ValueError, match="sample 1 is not finite"):
        pcm.to_int16(np.array([0.0, np.nan], np.float32))
    with pytest.raises(TypeError):
        pcm.to_float32(np.zeros(3, np.float32))
    with pytest.raises(TypeError):
        pcm.to_int16(np.zeros(3, np.int16))


def test_pcm_mono_takes_host_frames_and_refuses_the_rest() -> None:
    frame = np.zeros((1, 320), np.int16)
    view = pcm.mono(frame)
    assert view.shape == (320,)
    assert np.shares_memory(view, frame)  # a view: nothing copied, nothing mutated
    assert pcm.mono(np.zeros(5, np.float32)).shape == (5,)
    with pytest.raises(TypeError, match="numpy array"):
        pcm.mono(b"\x00\x00")
    with pytest.raises(TypeError, match="int16 or float32"):
        pcm.mono(np.zeros(4, np.float64))
    with pytest.raises(ValueError, match="mono"):
        pcm.mono(np.zeros((2, 4), np.int16))
    with pytest.raises(ValueError, match="non-finite"):
        pcm.mono(np.array([0.0, np.inf], np.float32))
