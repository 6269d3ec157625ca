"""The Nova Sonic side of novabridge.

`SonicConfig` (and the event types in `novabridge.events`) import anywhere; `SonicSession` runs in the worker
process and needs Python >= 3.12 with ``novabridge[sonic]``, so it is imported on first use.
"""

from typing import TYPE_CHECKING, Any

from novabridge.sonic.config import HistoryMessage, InferenceConfig, RetryPolicy, SonicConfig, ToolSpec

if TYPE_CHECKING:
    from novabridge.sonic.session import SessionClosed, SessionMetrics, SonicSession
    from novabridge.sonic.tools import Tool

__all__ = [
    "HistoryMessage",
    "InferenceConfig",
    "RetryPolicy",
    "SessionClosed",
    "SessionMetrics",
    "SonicConfig",
    "SonicSession",
    "Tool",
    "ToolSpec",
]

_LAZY = {
    "SonicSession": "novabridge.sonic.session",
    "SessionClosed": "novabridge.sonic.session",
    "SessionMetrics": "novabridge.sonic.session",
    "Tool": "novabridge.sonic.tools",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'novabridge.sonic' has no attribute {name!r}")
