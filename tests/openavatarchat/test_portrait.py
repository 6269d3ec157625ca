"""The weight-free avatar's frames and voice levels (pure numpy, no OpenAvatarChat)."""

import numpy as np
import pytest
from novabridge.openavatarchat.portrait import LEVELS, draw_frames, voice_level


def test_voice_level_spans_silence_to_loud_speech() -> None:
    rng = np.random.default_rng(1)
    assert voice_level(np.zeros(800, np.float32)) == 0.0
    assert voice_level(np.zeros(0, np.float32)) == 0.0
    assert voice_level((rng.standard_normal(800) * 1e-4).astype(np.float32)) == 0.0  # -80 dBFS: below the floor
    assert voice_level((rng.standard_normal(800) * 0.5).astype(np.float32)) == 1.0
    middle = voice_level((rng.standard_normal(800) * 0.02).astype(np.float32))  # about -34 dBFS
    assert 0.2 < middle < 0.7


def test_voice_level_is_the_same_for_int16_and_float32() -> None:
    tone = np.sin(np.arange(2400) * 0.07) * 0.1
    as_float = voice_level(tone.astype(np.float32))
    as_int16 = voice_level((tone * 32768).astype(np.int16))
    assert as_float == pytest.approx(as_int16, abs=1e-3)


def test_drawn_face_opens_its_mouth_with_the_voice() -> None:
    frames = draw_frames(96, 128)
    assert frames.shape == (96, 128, 3)
    assert len(frames.open_eyes) == len(frames.closed_eyes) == LEVELS
    assert all(f.dtype == np.uint8 and f.shape == (96, 128, 3) for f in frames.open_eyes + frames.closed_eyes)
    closed, wide = frames.frame(0.0), frames.frame(1.0)
    # Well inside the glow's ring (radius 0.9 of half the short side, 43 px), only the mouth changes: below the eyes
    # (row 43), around row 62.
    difference = np.abs(closed.astype(int) - wide.astype(int)).max(axis=2)
    rows = np.flatnonzero(difference[22:75, 38:90].max(axis=1) > 60) + 22
    assert len(rows) > 5
    assert rows.min() > 50
    assert rows.max() < 74
    assert not np.array_equal(frames.frame(0.0), frames.frame(0.0, blink=True))
    assert frames.frame(0.5) is frames.open_eyes[round(0.5 * (LEVELS - 1))]
    assert frames.frame(-3.0) is frames.open_eyes[0]
    assert frames.frame(7.0) is frames.open_eyes[-1]


def test_a_portrait_keeps_its_picture_and_glows_with_the_voice() -> None:
    photo = np.zeros((300, 200, 3), np.uint8)
    photo[:, :, 2] = 200  # a red picture, taller than the frame: scaled to cover and cropped
    frames = draw_frames(64, 64, photo)
    centre = frames.frame(0.0)[24:40, 24:40].astype(int)
    assert (centre[:, :, 2] > 180).all()
    assert (centre[:, :, 0] < 20).all()
    assert np.array_equal(frames.frame(0.0), frames.frame(0.0, blink=True))  # a photo does not blink
    assert int(frames.frame(1.0).sum()) > int(frames.frame(0.0).sum())  # the glow swells


@pytest.mark.parametrize(("height", "width"), [(15, 64), (64, 8), (63, 64), (64, 65)])
def test_frame_sizes_the_encoder_cannot_take_are_refused(height: int, width: int) -> None:
    with pytest.raises(ValueError, match="even and at least 16"):
        draw_frames(height, width)


def test_a_portrait_that_is_not_bgr_uint8_is_refused() -> None:
    with pytest.raises(ValueError, match="BGR uint8"):
        draw_frames(32, 32, np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError, match="BGR uint8"):
        draw_frames(32, 32, np.zeros((32, 32, 3), np.float32))
