"""Logger used by the stand-in (no OAC counterpart): loguru when importable, else a small stdlib-logging shim.

OAC itself imports ``from loguru import logger``. Only the calls OAC makes are provided: ``debug``, ``info``,
``warning``, ``error``, ``exception`` and ``opt(exception=...)``.
"""

import importlib
import logging
from typing import Any, Protocol, cast


class OacLogger(Protocol):
    """The part of loguru's ``logger`` that OAC's engine uses."""

    def debug(self, message: str, *args: Any, **kwargs: Any) -> None: ...

    def info(self, message: str, *args: Any, **kwargs: Any) -> None: ...

    def warning(self, message: str, *args: Any, **kwargs: Any) -> None: ...

    def error(self, message: str, *args: Any, **kwargs: Any) -> None: ...

    def exception(self, message: str, *args: Any, **kwargs: Any) -> None: ...

    def opt(self, *, exception: bool | BaseException | None = None, **kwargs: Any) -> "OacLogger": ...


class _StdlibLogger:
    """Forwards loguru-style calls (``{}`` formatting, ``opt(exception=...)``) to a stdlib logger."""

    def __init__(self, target: logging.Logger, exc_info: bool | BaseException | None = None) -> None:
        self._target = target
        self._exc_info = exc_info

    def _emit(self, level: int, message: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if args or kwargs:
            message = message.format(*args, **kwargs)
        self._target.log(level, message, exc_info=self._exc_info or None, stacklevel=3)

    def debug(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._emit(logging.DEBUG, message, args, kwargs)

    def info(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._emit(logging.INFO, message, args, kwargs)

    def warning(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._emit(logging.WARNING, message, args, kwargs)

    def error(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._emit(logging.ERROR, message, args, kwargs)

    def exception(self, message: str, *args: Any, **kwargs: Any) -> None:
        _StdlibLogger(self._target, True)._emit(logging.ERROR, message, args, kwargs)

    def opt(self, *, exception: bool | BaseException | None = None, **kwargs: Any) -> OacLogger:
        return _StdlibLogger(self._target, exception)


def _load_logger() -> OacLogger:
    try:
        loguru = importlib.import_module("loguru")
    except ImportError:
        return _StdlibLogger(logging.getLogger("chat_engine"))
    return cast(OacLogger, loguru.logger)


logger: OacLogger = _load_logger()
