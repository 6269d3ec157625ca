"""A local Nova Sonic endpoint speaking the service's real wire protocol, for development, tests and demos.

The unmodified ``aws-sdk-bedrock-runtime`` client reaches it through ``endpoint_uri`` and trusts it through
``ca_file``; see `novabridge.sonic.transport`. Needs ``novabridge[emulator]`` (Python >= 3.12). Names are
imported on first use, so the dependency-free parts (the synthetic voice) also serve hosts without the extra.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from novabridge.emulator.faults import Fault, FaultKind
    from novabridge.emulator.options import EmulatorOptions
    from novabridge.emulator.process import EmulatorProcess
    from novabridge.emulator.recording import StreamRecording, TurnRecord
    from novabridge.emulator.scenario import Scenario, ScenarioError, ToolCall, Turn
    from novabridge.emulator.server import Emulator, ThreadedEmulator
    from novabridge.emulator.service import (
        BARGE_IN_MARKER,
        MODEL_IDS,
        NOVA_2_SONIC,
        NOVA_SONIC_V1,
        Endpointing,
        Message,
    )
    from novabridge.emulator.voice import synthesize

__all__ = [
    "BARGE_IN_MARKER",
    "MODEL_IDS",
    "NOVA_2_SONIC",
    "NOVA_SONIC_V1",
    "Emulator",
    "EmulatorOptions",
    "EmulatorProcess",
    "Endpointing",
    "Fault",
    "FaultKind",
    "Message",
    "Scenario",
    "ScenarioError",
    "StreamRecording",
    "ThreadedEmulator",
    "ToolCall",
    "Turn",
    "TurnRecord",
    "synthesize",
]

_LAZY = {
    "BARGE_IN_MARKER": "novabridge.emulator.service",
    "Emulator": "novabridge.emulator.server",
    "EmulatorOptions": "novabridge.emulator.options",
    "EmulatorProcess": "novabridge.emulator.process",
    "Endpointing": "novabridge.emulator.service",
    "Fault": "novabridge.emulator.faults",
    "FaultKind": "novabridge.emulator.faults",
    "MODEL_IDS": "novabridge.emulator.service",
    "Message": "novabridge.emulator.service",
    "NOVA_2_SONIC": "novabridge.emulator.service",
    "NOVA_SONIC_V1": "novabridge.emulator.service",
    "Scenario": "novabridge.emulator.scenario",
    "ScenarioError": "novabridge.emulator.scenario",
    "StreamRecording": "novabridge.emulator.recording",
    "ThreadedEmulator": "novabridge.emulator.server",
    "ToolCall": "novabridge.emulator.scenario",
    "Turn": "novabridge.emulator.scenario",
    "TurnRecord": "novabridge.emulator.recording",
    "synthesize": "novabridge.emulator.voice",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'novabridge.emulator' has no attribute {name!r}")
