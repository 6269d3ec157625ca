"""The frames of the weight-free avatar: a portrait whose mouth follows the voice, drawn with numpy alone.

Every frame the avatar can show is drawn once, when the handler loads: `LEVELS` mouth openings, each with the eyes
open and closed. A session then only picks a frame per tick, so thirty frames a second cost next to nothing beside
the video encoder. Frames are BGR uint8 ``(height, width, 3)``, what OpenAvatarChat's WebRTC client encodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

LEVELS = 12
"""Mouth openings drawn, from closed to wide open."""
SILENCE_DBFS = -50.0
LOUD_DBFS = -12.0
"""Voice levels mapped to a closed and a fully open mouth."""

Frame = np.ndarray[Any, np.dtype[np.uint8]]

_BACKGROUND_TOP = np.array([74, 52, 38], np.float32)  # BGR: a deep blue fading to teal
_BACKGROUND_BOTTOM = np.array([120, 110, 40], np.float32)
_SKIN = np.array([150, 185, 225], np.float32)
_HAIR = np.array([40, 45, 60], np.float32)
_EYE = np.array([50, 40, 35], np.float32)
_MOUTH = np.array([60, 50, 150], np.float32)
_RING = np.array([120, 230, 255], np.float32)


def voice_level(samples: np.ndarray[Any, Any]) -> float:
    """How loud ``samples`` (float in [-1, 1] or int16) are, from 0 (silence) to 1 (loud speech)."""
    if samples.size == 0:
        return 0.0
    values = samples.astype(np.float64)
    if samples.dtype == np.int16:
        values /= 32768.0
    rms = math.sqrt(float(np.mean(values * values)))
    if not math.isfinite(rms) or rms <= 0.0:
        return 0.0
    dbfs = 20.0 * math.log10(rms)
    return min(1.0, max(0.0, (dbfs - SILENCE_DBFS) / (LOUD_DBFS - SILENCE_DBFS)))


@dataclass(frozen=True)
class PortraitFrames:
    """The frames of one look: ``open_eyes[i]`` and ``closed_eyes[i]`` show mouth opening ``i`` of `LEVELS`."""

    open_eyes: tuple[Frame, ...]
    closed_eyes: tuple[Frame, ...]

    def frame(self, level: float, *, blink: bool = False) -> Frame:
        """The frame for a voice level in [0, 1]."""
        index = min(LEVELS - 1, max(0, round(level * (LEVELS - 1))))
        return (self.closed_eyes if blink else self.open_eyes)[index]

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(height, width, 3)``."""
        height, width, channels = self.open_eyes[0].shape
        return height, width, channels


def _grid(height: int, width: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Pixel coordinates scaled so the shorter side spans [-1, 1]."""
    scale = min(height, width) / 2
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return (ys - height / 2) / scale, (xs - width / 2) / scale


def _ellipse(ys: np.ndarray[Any, Any], xs: np.ndarray[Any, Any], cy: float, cx: float, ry: float, rx: float) -> Any:
    """Coverage in [0, 1] of an ellipse, anti-aliased over about a pixel."""
    distance = np.sqrt(((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2)
    edge = 2.0 / (min(ys.shape) * min(ry, rx))
    return np.clip((1.0 - distance) / edge + 0.5, 0.0, 1.0)[..., None]


def _paint(image: np.ndarray[Any, Any], coverage: Any, color: np.ndarray[Any, Any]) -> None:
    image *= 1.0 - coverage
    image += coverage * color


def _drawn_face(ys: np.ndarray[Any, Any], xs: np.ndarray[Any, Any], blink: bool) -> np.ndarray[Any, Any]:
    """The drawn face without its mouth."""
    height, width = ys.shape
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    image = np.broadcast_to(_BACKGROUND_TOP * (1 - rows) + _BACKGROUND_BOTTOM * rows, (height, width, 3)).copy()
    _paint(image, _ellipse(ys, xs, 0.95, 0.0, 0.45, 0.75), _HAIR * 0.9)  # shoulders
    _paint(image, _ellipse(ys, xs, -0.12, 0.0, 0.66, 0.54), _HAIR)  # hair behind the face
    _paint(image, _ellipse(ys, xs, 0.0, 0.0, 0.58, 0.46), _SKIN)
    for side in (-1.0, 1.0):
        eye_height = 0.012 if blink else 0.07
        _paint(image, _ellipse(ys, xs, -0.1, side * 0.17, eye_height, 0.06), _EYE)
    return image


def _ring(ys: np.ndarray[Any, Any], xs: np.ndarray[Any, Any]) -> Any:
    """A glow around the portrait, at full strength: it swells with the voice, so speech shows even on a photo."""
    radius = np.sqrt(ys * ys + xs * xs)
    return np.exp(-(((radius - 0.9) / 0.05) ** 2))[..., None]


def _fitted(image: np.ndarray[Any, Any], height: int, width: int) -> np.ndarray[Any, Any]:
    """``image`` scaled to cover ``height`` x ``width`` and cropped to it (nearest neighbour: drawn once)."""
    source_height, source_width = image.shape[:2]
    scale = max(height / source_height, width / source_width)
    rows = np.minimum((np.arange(height) + (source_height * scale - height) / 2) / scale, source_height - 1)
    columns = np.minimum((np.arange(width) + (source_width * scale - width) / 2) / scale, source_width - 1)
    fitted: np.ndarray[Any, Any] = image[rows.astype(np.intp)][:, columns.astype(np.intp)].astype(np.float32)
    return fitted


def load_image(path: Path) -> np.ndarray[Any, Any]:
    """A portrait file as BGR uint8, read with OpenCV (OpenAvatarChat installs it)."""
    try:
        import cv2
    except ImportError as error:
        raise ValueError(
            f"portrait {path}: reading an image needs opencv-python (pip install opencv-python)"
        ) from error
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"portrait {path}: not a readable image")
    return np.asarray(image, dtype=np.uint8)


def draw_frames(height: int, width: int, portrait: np.ndarray[Any, Any] | None = None) -> PortraitFrames:
    """Every frame of a look: the drawn face, or ``portrait`` (BGR uint8) with a voice-reactive glow."""
    if height < 16 or width < 16 or height % 2 or width % 2:
        raise ValueError(f"frame size {width}x{height}: both sides must be even and at least 16 (the encoder's 4:2:0)")
    if portrait is not None and (portrait.ndim != 3 or portrait.shape[2] != 3 or portrait.dtype != np.uint8):
        raise ValueError(f"portrait must be BGR uint8 (height, width, 3), not {portrait.dtype} {portrait.shape}")
    ys, xs = _grid(height, width)
    ring = _ring(ys, xs)
    photo = _fitted(portrait, height, width) if portrait is not None else None
    looks: dict[bool, list[Frame]] = {False: [], True: []}
    for blink in (False, True):
        # A photo does not blink or move its lips: the glow carries the voice.
        face = _drawn_face(ys, xs, blink) if photo is None else photo
        for index in range(LEVELS):
            level = index / (LEVELS - 1)
            image = face.copy()
            if photo is None:
                mouth = _ellipse(ys, xs, 0.3, 0.0, 0.015 + 0.13 * level, 0.12 + 0.03 * level)
                _paint(image, mouth, _MOUTH)
            _paint(image, ring * (0.15 + 0.85 * level), _RING)
            looks[blink].append(np.clip(image, 0, 255).astype(np.uint8))
    return PortraitFrames(open_eyes=tuple(looks[False]), closed_eyes=tuple(looks[True]))
