"""Tools the model may call: a schema for the service and a Python callable (sync or async) to run."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from novabridge.sonic.config import ToolSpec
from novabridge.sonic.wire import tool_result_content

ToolHandler = Callable[[dict[str, Any]], Any] | Callable[[dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Tool:
    """A tool: its spec (name, description, input schema) and its handler, called with the parsed input."""

    spec: ToolSpec
    handler: ToolHandler

    @classmethod
    def from_function(
        cls,
        handler: ToolHandler,
        *,
        name: str | None = None,
        description: str | None = None,
        input_schema: dict[str, Any] | None = None,
    ) -> Tool:
        """Describe ``handler`` by its name and docstring unless told otherwise."""
        spec = ToolSpec(
            name=name or handler.__name__,
            description=description or inspect.getdoc(handler) or handler.__name__,
            **({"input_schema": input_schema} if input_schema is not None else {}),
        )
        return cls(spec, handler)


async def run_tool(tool: Tool, arguments: dict[str, Any], *, timeout_s: float) -> str:
    """Run a tool and return its result as the JSON string the service expects (`tool_result_content`).

    A sync handler runs in a thread so it never blocks the audio. A failure, a timeout or a result the service
    would reject (not strict JSON, too large) becomes ``{"error": ...}`` for the model to talk about, instead of
    ending the stream.
    """
    try:
        async with asyncio.timeout(timeout_s):
            if inspect.iscoroutinefunction(tool.handler):
                result = await tool.handler(arguments)
            else:
                result = await asyncio.to_thread(tool.handler, arguments)
                if inspect.isawaitable(result):
                    result = await result
        return tool_result_content(result)
    except TimeoutError:
        return json.dumps({"error": f"tool {tool.spec.name} timed out after {timeout_s} s"})
    except asyncio.CancelledError:
        raise
    except Exception as error:  # noqa: BLE001 - a tool's failure is reported to the model, not raised
        return json.dumps({"error": f"{type(error).__name__}: {error}"})
