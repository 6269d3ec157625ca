"""Nova Sonic input events written out as the AWS user guides show them, independent of novabridge's builders.

Sources: "Handling input events" (v1 guide), the Nova 2 guide's turn detection, cross-modal input and chat history
pages. Keeping these literal means the emulator and novabridge's own client cannot agree on a mistake.
"""

import base64
import json
from typing import Any

Event = dict[str, Any]

NOVA_2 = "amazon.nova-2-sonic-v1:0"
NOVA_1 = "amazon.nova-sonic-v1:0"


def session_start(sensitivity: str | None = "HIGH") -> Event:
    body: dict[str, Any] = {"inferenceConfiguration": {"maxTokens": 1024, "topP": 0.9, "temperature": 0.7}}
    if sensitivity is not None:
        body["turnDetectionConfiguration"] = {"endpointingSensitivity": sensitivity}
    return {"event": {"sessionStart": body}}


def prompt_start(prompt: str, *, voice: str = "matthew", rate: int = 24000, tools: list[Event] | None = None) -> Event:
    body: dict[str, Any] = {
        "promptName": prompt,
        "textOutputConfiguration": {"mediaType": "text/plain"},
        "audioOutputConfiguration": {
            "mediaType": "audio/lpcm",
            "sampleRateHertz": rate,
            "sampleSizeBits": 16,
            "channelCount": 1,
            "voiceId": voice,
            "encoding": "base64",
            "audioType": "SPEECH",
        },
    }
    if tools is not None:
        body["toolUseOutputConfiguration"] = {"mediaType": "application/json"}
        body["toolConfiguration"] = {"toolChoice": {"auto": {}}, "tools": tools}
    return {"event": {"promptStart": body}}


def tool_spec(name: str, description: str, schema: Event | None = None) -> Event:
    schema = schema or {"type": "object", "properties": {}, "required": []}
    return {"toolSpec": {"name": name, "description": description, "inputSchema": {"json": json.dumps(schema)}}}


def text_start(prompt: str, content: str, *, role: str = "SYSTEM", interactive: bool = False) -> Event:
    return {
        "event": {
            "contentStart": {
                "promptName": prompt,
                "contentName": content,
                "type": "TEXT",
                "interactive": interactive,
                "role": role,
                "textInputConfiguration": {"mediaType": "text/plain"},
            }
        }
    }


def text_input(prompt: str, content: str, text: str) -> Event:
    return {"event": {"textInput": {"promptName": prompt, "contentName": content, "content": text}}}


def content_end(prompt: str, content: str) -> Event:
    return {"event": {"contentEnd": {"promptName": prompt, "contentName": content}}}


def text_block(prompt: str, content: str, text: str, *, role: str = "SYSTEM", interactive: bool = False) -> list[Event]:
    return [
        text_start(prompt, content, role=role, interactive=interactive),
        text_input(prompt, content, text),
        content_end(prompt, content),
    ]


def audio_start(prompt: str, content: str, *, rate: int = 16000) -> Event:
    return {
        "event": {
            "contentStart": {
                "promptName": prompt,
                "contentName": content,
                "type": "AUDIO",
                "interactive": True,
                "role": "USER",
                "audioInputConfiguration": {
                    "mediaType": "audio/lpcm",
                    "sampleRateHertz": rate,
                    "sampleSizeBits": 16,
                    "channelCount": 1,
                    "audioType": "SPEECH",
                    "encoding": "base64",
                },
            }
        }
    }


def audio_input(prompt: str, content: str, pcm: bytes) -> Event:
    encoded = base64.b64encode(pcm).decode()
    return {"event": {"audioInput": {"promptName": prompt, "contentName": content, "content": encoded}}}


def tool_result(prompt: str, content: str, tool_use_id: str, result: str) -> list[Event]:
    return [
        {
            "event": {
                "contentStart": {
                    "promptName": prompt,
                    "contentName": content,
                    "interactive": False,
                    "type": "TOOL",
                    "role": "TOOL",
                    "toolResultInputConfiguration": {
                        "toolUseId": tool_use_id,
                        "type": "TEXT",
                        "textInputConfiguration": {"mediaType": "text/plain"},
                    },
                }
            }
        },
        {"event": {"toolResult": {"promptName": prompt, "contentName": content, "content": result}}},
        content_end(prompt, content),
    ]


def prompt_end(prompt: str) -> Event:
    return {"event": {"promptEnd": {"promptName": prompt}}}


def session_end() -> Event:
    return {"event": {"sessionEnd": {}}}
