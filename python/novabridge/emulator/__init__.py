"""A local Nova Sonic endpoint speaking the service's real wire protocol, for development, tests and demos.

The unmodified ``aws-sdk-bedrock-runtime`` client reaches it through ``endpoint_uri`` and trusts it through
``ca_file``; see `novabridge.sonic.transport`. Needs ``novabridge[emulator]`` (Python >= 3.12).
"""

from novabridge.emulator.faults import Fault, FaultKind
from novabridge.emulator.options import EmulatorOptions
from novabridge.emulator.recording import StreamRecording, TurnRecord
from novabridge.emulator.scenario import Scenario, ScenarioError, ToolCall, Turn
from novabridge.emulator.server import Emulator, ThreadedEmulator
from novabridge.emulator.service import BARGE_IN_MARKER, MODEL_IDS, NOVA_2_SONIC, NOVA_SONIC_V1, Endpointing, Message
from novabridge.emulator.voice import synthesize

__all__ = [
    "BARGE_IN_MARKER",
    "MODEL_IDS",
    "NOVA_2_SONIC",
    "NOVA_SONIC_V1",
    "Emulator",
    "EmulatorOptions",
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
