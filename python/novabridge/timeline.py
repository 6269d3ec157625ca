"""One picture of a conversation: both voices on one time axis, what was said, each turn's latency and barge-ins.

Any run that has the user's audio and the assistant's audio on one clock can draw it: `novabridge demo` and
`novabridge chat` (the host's monotonic clock, from the first frame sent), or a browser test (the page's clock)::

    draw_timeline(
        Path("timeline.png"),
        user=Track(mic_samples, 16000, start_s=0.0),
        assistant=Track(received_samples, 24000, start_s=0.0),
        turns=[TurnMark(speech_end_s=2.1, first_audio_s=2.9, user_text="Hello", assistant_text="Hi!")],
        title="a conversation",
    )

Drawing needs matplotlib (``novabridge[demo]``); it uses a private figure and the Agg renderer, never pyplot's
global state, so it is safe in any host.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from novabridge import pcm

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["Track", "TurnMark", "draw_timeline"]

_USER_COLOUR = "#2f6db3"
_ASSISTANT_COLOUR = "#d0742a"
_LATENCY_COLOUR = "#2a8a4a"
_BARGE_IN_COLOUR = "#c0392b"
# Lanes, in axes units from the bottom: assistant text, assistant voice, the marks between, user voice, user text.
_USER_LANE = (0.62, 0.84)
_ASSISTANT_LANE = (0.17, 0.39)
_USER_TEXT_TOP = 0.985
_ASSISTANT_TEXT_TOP = 0.145
_LATENCY_Y = 0.5
_BARGE_IN_Y = 0.43
_FONT_PT = 8.5
_CHAR_WIDTH_EM = 0.58
"""An average character of the default sans-serif font, in ems, for wrapping text into the time it belongs to."""
_TEXT_LINES = 3
_NOTE_PT = 8.0
_NOTE_LINE_IN = 0.2
_ENVELOPE_COLUMNS = 3000
_DPI = 100


@dataclass(frozen=True)
class Track:
    """One side's audio: mono samples at ``rate`` Hz whose first sample sounded at ``start_s`` on the shared clock.

    Attributes:
        samples: int16, or float32 in [-1, 1]; shape (N,) or (1, N); may be empty.
        rate: samples per second.
        start_s: seconds on the clock the turns are marked on.

    Raises:
        TypeError, ValueError: samples that are not mono int16 or float32 (see `novabridge.pcm.mono`), a rate that
            is not a positive integer, or a start that is not finite.
    """

    samples: npt.NDArray[Any]
    rate: int
    start_s: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "samples", pcm.mono(self.samples))
        if isinstance(self.rate, bool) or not isinstance(self.rate, int) or self.rate <= 0:
            raise ValueError(f"rate must be a positive integer, got {self.rate!r}")
        if not math.isfinite(self.start_s):
            raise ValueError(f"start_s must be finite, got {self.start_s!r}")

    @property
    def end_s(self) -> float:
        """When the last sample ended."""
        return self.start_s + len(self.samples) / self.rate

    def normalised(self) -> npt.NDArray[np.float64]:
        """The samples as floats in [-1, 1]."""
        if self.samples.dtype == np.int16:
            return self.samples.astype(np.float64) / 32768.0
        return self.samples.astype(np.float64)


@dataclass(frozen=True)
class TurnMark:
    """What to mark of one turn; every time is in seconds on the tracks' clock, None when it did not happen.

    Raises:
        ValueError: a time that is not finite.
    """

    speech_end_s: float | None = None
    """The end of the user's speech this turn answers."""
    first_audio_s: float | None = None
    """The first audio of the answer."""
    user_text: str = ""
    assistant_text: str = ""
    barge_in_s: float | None = None
    """Where the user's voice started over this turn's answer."""
    quiet_s: float | None = None
    """Where the answer went quiet after the barge-in."""

    def __post_init__(self) -> None:
        for name in ("speech_end_s", "first_audio_s", "barge_in_s", "quiet_s"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be finite or None, got {value!r}")

    @property
    def latency_s(self) -> float | None:
        """From the end of the user's speech to the answer's first audio."""
        if self.speech_end_s is None or self.first_audio_s is None:
            return None
        return self.first_audio_s - self.speech_end_s

    @property
    def talk_over_s(self) -> float | None:
        """How long the answer went on over the user's voice."""
        if self.barge_in_s is None or self.quiet_s is None:
            return None
        return self.quiet_s - self.barge_in_s

    def times(self) -> list[float]:
        """The times this mark places on the axis."""
        candidates = (self.speech_end_s, self.first_audio_s, self.barge_in_s, self.quiet_s)
        return [t for t in candidates if t is not None]


def draw_timeline(
    path: Path,
    user: Track,
    assistant: Track,
    turns: Sequence[TurnMark],
    *,
    title: str,
    notes: Sequence[str] = (),
) -> None:
    """Draw the conversation into a PNG at ``path``.

    The user's voice is the upper lane with the user's words above it, the assistant's the lower lane with its
    words below; each voice is scaled to its own peak. Between them, a green bracket from each end of speech to the
    answer's first audio is labelled with the latency, and a red line marks each barge-in, with a bracket to where
    the answer went quiet. The axis spans the tracks and the marks. ``notes`` are printed under the plot, one line
    each.

    Raises:
        TypeError: ``user`` or ``assistant`` is not a `Track`, or a turn is not a `TurnMark`.
        ModuleNotFoundError: matplotlib is not installed.
    """
    for name, track in (("user", user), ("assistant", assistant)):
        if not isinstance(track, Track):
            raise TypeError(f"{name} must be a Track, not {type(track).__name__}")
    for turn in turns:
        if not isinstance(turn, TurnMark):
            raise TypeError(f"turns must be TurnMarks, not {type(turn).__name__}")
    try:
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "drawing the timeline needs matplotlib: pip install 'novabridge[demo]'", name=error.name
        ) from None

    times = [user.start_s, user.end_s, assistant.start_s, assistant.end_s]
    times += [t for turn in turns for t in turn.times()]
    start, end = min(times), max(times)
    if end - start < 1.0:
        end = start + 1.0
    width_in = min(22.0, max(9.0, 4.0 + 0.45 * (end - start)))
    note_chars = int(width_in * 72 / (_CHAR_WIDTH_EM * _NOTE_PT)) - 4
    note_lines = [line for note in notes for line in textwrap.wrap(note, note_chars) or [""]]
    notes_in = _NOTE_LINE_IN * len(note_lines)
    height_in = 5.5 + notes_in
    figure = Figure(figsize=(width_in, height_in), dpi=_DPI)
    left_in, right_in, top_in, bottom_in = 0.95, 0.3, 0.45, 1.05 + notes_in
    figure.subplots_adjust(
        left=left_in / width_in,
        right=1 - right_in / width_in,
        top=1 - top_in / height_in,
        bottom=bottom_in / height_in,
    )
    axes = figure.add_subplot()
    axes.set_xlim(start, end)
    axes.set_ylim(0.0, 1.0)
    axes.set_title(title, fontsize=11)
    axes.set_xlabel("time (s)")
    axes.set_yticks([sum(_USER_LANE) / 2, sum(_ASSISTANT_LANE) / 2], ["user", "assistant"])
    axes.tick_params(axis="y", length=0)
    axes.grid(axis="x", color="#e4e4e4", linewidth=0.6)
    axes.set_axisbelow(True)
    _draw_voice(axes, user, _USER_LANE, _USER_COLOUR, start, end)
    _draw_voice(axes, assistant, _ASSISTANT_LANE, _ASSISTANT_COLOUR, start, end)

    seconds_per_char = _CHAR_WIDTH_EM * _FONT_PT / 72 / (width_in - left_in - right_in) * (end - start)
    previous_user_anchor = start
    for index, turn in enumerate(turns):
        later = [t.first_audio_s for t in turns[index + 1 :] if t.first_audio_s is not None]
        next_anchor = later[0] if later else end
        if turn.user_text and turn.speech_end_s is not None:
            room = turn.speech_end_s - previous_user_anchor
            _write(axes, turn.user_text, turn.speech_end_s, _USER_TEXT_TOP, room / seconds_per_char, "right")
            previous_user_anchor = turn.speech_end_s
        if turn.assistant_text and turn.first_audio_s is not None:
            room = next_anchor - turn.first_audio_s
            _write(axes, turn.assistant_text, turn.first_audio_s, _ASSISTANT_TEXT_TOP, room / seconds_per_char, "left")
        _mark_latency(axes, turn)
        _mark_barge_in(axes, turn)

    # The legend names only what is drawn.
    handles = []
    if any(turn.latency_s is not None for turn in turns):
        handles.append(Line2D([], [], color=_LATENCY_COLOUR, label="end of user speech to first assistant audio"))
    if any(turn.barge_in_s is not None for turn in turns):
        handles.append(Line2D([], [], color=_BARGE_IN_COLOUR, label="user barges in; the answer goes quiet (dashed)"))
    # Under the axis label: the legend, then the notes.
    if handles:
        figure.legend(
            handles=handles,
            loc="lower left",
            bbox_to_anchor=(0.0, (notes_in + 0.05) / height_in),
            fontsize=_NOTE_PT,
            frameon=False,
            ncols=2,
        )
    for index, line in enumerate(note_lines):
        y_in = 0.1 + _NOTE_LINE_IN * (len(note_lines) - 1 - index)
        figure.text(0.1 / width_in, y_in / height_in, line, fontsize=_NOTE_PT, color="#333333")
    figure.savefig(path, format="png")


def _draw_voice(axes: Axes, track: Track, lane: tuple[float, float], colour: str, start: float, end: float) -> None:
    """The track's min/max envelope in its lane, scaled to its peak; a flat line where there is no audio."""
    low, high = lane
    middle, half = (low + high) / 2, (high - low) / 2
    axes.axhline(middle, color=colour, linewidth=0.5, alpha=0.5)
    samples = track.normalised()
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    if peak == 0.0:
        axes.text(start + 0.005 * (end - start), middle + 0.02, "no audio", fontsize=7, color=colour)
        return
    per_column = max(1, math.ceil(len(samples) / _ENVELOPE_COLUMNS))
    columns = math.ceil(len(samples) / per_column)
    padded = np.zeros(columns * per_column)
    padded[: len(samples)] = samples / peak
    shaped = padded.reshape(columns, per_column)
    times = track.start_s + (np.arange(columns) + 0.5) * per_column / track.rate
    axes.fill_between(
        times, middle + half * shaped.min(axis=1), middle + half * shaped.max(axis=1), color=colour, linewidth=0.4
    )


def _write(axes: Axes, text: str, at: float, top: float, room_chars: float, align: str) -> None:
    """``text`` wrapped into the room it has on the axis (a few lines at most, ellipsised)."""
    width = int(room_chars) - 2
    if width < 6:
        return
    lines = textwrap.wrap(text, width=width, max_lines=_TEXT_LINES, placeholder=" ...")
    axes.text(at, top, "\n".join(lines), ha=align, va="top", fontsize=_FONT_PT, color="#222222", linespacing=1.15)


def _mark_latency(axes: Axes, turn: TurnMark) -> None:
    """A bracket from the end of speech to the first audio, with the latency; or what is known of it."""
    if turn.speech_end_s is not None:
        axes.vlines(turn.speech_end_s, _LATENCY_Y, _USER_LANE[0], color=_LATENCY_COLOUR, linestyle=":", linewidth=1)
    if turn.first_audio_s is not None:
        axes.vlines(
            turn.first_audio_s, _ASSISTANT_LANE[1], _LATENCY_Y, color=_LATENCY_COLOUR, linestyle=":", linewidth=1
        )
    latency = turn.latency_s
    if latency is not None and turn.speech_end_s is not None and turn.first_audio_s is not None:
        _bracket(axes, turn.speech_end_s, turn.first_audio_s, _LATENCY_Y, _LATENCY_COLOUR, f"{latency * 1000:.0f} ms")
    elif turn.speech_end_s is not None:
        axes.text(turn.speech_end_s, _LATENCY_Y, " no answer", va="center", fontsize=_FONT_PT, color=_LATENCY_COLOUR)


def _mark_barge_in(axes: Axes, turn: TurnMark) -> None:
    """A line where the user's voice started over the answer, a dashed one where the answer stopped, the gap."""
    if turn.barge_in_s is None:
        return
    axes.vlines(turn.barge_in_s, _ASSISTANT_LANE[0], _USER_LANE[1], color=_BARGE_IN_COLOUR, linewidth=1.3)
    axes.text(
        turn.barge_in_s,
        _USER_LANE[1],
        "barge-in ",
        ha="right",
        va="top",
        fontsize=_FONT_PT,
        color=_BARGE_IN_COLOUR,
    )
    if turn.quiet_s is None:
        return
    axes.vlines(turn.quiet_s, _ASSISTANT_LANE[0], _ASSISTANT_LANE[1], color=_BARGE_IN_COLOUR, linestyle="--")
    talk_over = turn.talk_over_s
    assert talk_over is not None
    label = f"quiet {talk_over * 1000:.0f} ms later"
    _bracket(axes, turn.barge_in_s, turn.quiet_s, _BARGE_IN_Y, _BARGE_IN_COLOUR, label, beside=True)


def _bracket(axes: Axes, start: float, end: float, y: float, colour: str, label: str, *, beside: bool = False) -> None:
    """A bracket from ``start`` to ``end`` at height ``y``, labelled above its middle or, ``beside``, after it."""
    axes.annotate(
        "",
        xy=(end, y),
        xytext=(start, y),
        arrowprops={"arrowstyle": "|-|", "color": colour, "linewidth": 1.2, "mutation_scale": 4},
    )
    if beside:
        axes.text(max(start, end), y, f" {label}", va="center", fontsize=_FONT_PT, color=colour)
    else:
        axes.text(
            (start + end) / 2,
            y + 0.02,
            label,
            ha="center",
            va="bottom",
            fontsize=_FONT_PT,
            color=colour,
            fontweight="bold",
        )
