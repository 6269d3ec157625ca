"""Scripted conversations: what the user "said" in each turn and what the assistant answers, tools included."""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ScenarioError(ValueError):
    """A scenario file that cannot be used, with the reason."""


@dataclass(frozen=True)
class ToolCall:
    """A tool the assistant calls in a turn, with its input."""

    name: str
    input: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Turn:
    """One exchange.

    ``user`` is the transcript the emulator reports for the user's utterance (it cannot recognise speech).
    ``assistant`` is the answer; with a tool it is spoken after the result arrives and may quote it as
    ``{result}`` or ``{result[key]}``. ``{n}`` (turn number) and ``{seconds}`` (voiced seconds) are available too.
    """

    assistant: str
    user: str | None = None
    tool: ToolCall | None = None


DEFAULT_USER = "(speech, {seconds:.1f} seconds)"
DEFAULT_ANSWER = "This is answer {n}. I heard {seconds:.1f} seconds of speech."


@dataclass(frozen=True)
class Scenario:
    """The turns in order; past the last one every turn gets the default answer."""

    turns: tuple[Turn, ...] = ()
    default_user: str = DEFAULT_USER
    default_answer: str = DEFAULT_ANSWER

    def turn(self, index: int) -> Turn:
        """The script for turn ``index`` (0-based)."""
        if index < len(self.turns):
            return self.turns[index]
        return Turn(assistant=self.default_answer)

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        """Read a YAML or JSON scenario file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as error:
            raise ScenarioError(f"{path}: {error}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "scenario") -> Scenario:
        """Build from parsed YAML/JSON: ``{"turns": [{"user": ..., "assistant": ..., "tool": {...}}], ...}``."""
        if not isinstance(data, Mapping):
            raise ScenarioError(f"{source}: expected a mapping with a 'turns' list")
        unknown = set(data) - {"turns", "default_user", "default_answer"}
        if unknown:
            raise ScenarioError(f"{source}: unknown keys {sorted(unknown)}")
        turns = data.get("turns", [])
        if not isinstance(turns, list):
            raise ScenarioError(f"{source}: 'turns' must be a list")
        parsed = tuple(_turn(item, f"{source}: turn {i + 1}") for i, item in enumerate(turns))
        scenario = cls(
            turns=parsed,
            default_user=_text(data.get("default_user", DEFAULT_USER), f"{source}: default_user"),
            default_answer=_text(data.get("default_answer", DEFAULT_ANSWER), f"{source}: default_answer"),
        )
        for where, template in [("default_user", scenario.default_user), ("default_answer", scenario.default_answer)]:
            _check_template(template, f"{source}: {where}")
        return scenario


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ScenarioError(f"{where}: expected non-empty text")
    return value


def _check_template(template: str, where: str) -> None:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:
        raise ScenarioError(f"{where}: {error}") from None
    roots = {name.split("[", 1)[0].split(".", 1)[0] for name in names}
    if not roots <= {"n", "seconds", "result"}:
        raise ScenarioError(f"{where}: unknown fields {sorted(roots - {'n', 'seconds', 'result'})}")


def _turn(item: Any, where: str) -> Turn:
    if not isinstance(item, Mapping):
        raise ScenarioError(f"{where}: expected a mapping")
    unknown = set(item) - {"user", "assistant", "tool"}
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {sorted(unknown)}")
    assistant = _text(item.get("assistant"), f"{where}: assistant")
    _check_template(assistant, f"{where}: assistant")
    user = item.get("user")
    if user is not None:
        user = _text(user, f"{where}: user")
    tool = item.get("tool")
    call = None
    if tool is not None:
        if not isinstance(tool, Mapping) or not isinstance(tool.get("name"), str):
            raise ScenarioError(f"{where}: tool must be a mapping with a 'name' and an optional 'input' mapping")
        tool_input = tool.get("input", {})
        if not isinstance(tool_input, Mapping):
            raise ScenarioError(f"{where}: tool input must be a mapping")
        call = ToolCall(tool["name"], dict(tool_input))
    return Turn(assistant=assistant, user=user, tool=call)


def render(template: str, *, n: int, seconds: float, result: Any = None) -> str:
    """Fill a turn's template; a result that lacks a quoted key is quoted whole rather than failing the turn."""
    try:
        return template.format(n=n, seconds=seconds, result=_Result(result))
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        return template.format(n=n, seconds=seconds, result=_Whole(result))


class _Result:
    """A tool result in a template: ``{result}`` is its JSON text, ``{result[key]}`` one of its fields."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def __getitem__(self, key: Any) -> Any:
        value = self._value[key]
        return _Result(value) if isinstance(value, (dict, list)) else value

    def __format__(self, spec: str) -> str:
        text = self._value if isinstance(self._value, str) else json.dumps(self._value)
        return format(text, spec)


class _Whole:
    """Stands in for a result whose fields do not match the template: every lookup gives the whole result."""

    def __init__(self, value: Any) -> None:
        self._text = json.dumps(value) if not isinstance(value, str) else value

    def __getitem__(self, _key: object) -> _Whole:
        return self

    def __getattr__(self, _name: str) -> _Whole:
        return self

    def __format__(self, spec: str) -> str:
        return self._text
