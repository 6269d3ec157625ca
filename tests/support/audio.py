"""Synthetic audio for the tests."""

import numpy as np


def tone(seconds: float, hz: float = 220.0) -> np.ndarray:
    t = np.arange(round(seconds * 16000)) / 16000
    return (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)
