# SPDX-License-Identifier: Apache-2.0
"""The Nova Sonic models novabridge knows: ids, generations, voices, regions, end of life.

docs/nova-sonic.md ("Models") cites where each fact comes from. A model id the package does not know yet is taken
with a warning and the newest generation's rules (`model_for`), so a new model needs no new release.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass
from typing import Final

NOVA_SONIC_V1: Final = "amazon.nova-sonic-v1:0"
NOVA_2_SONIC: Final = "amazon.nova-2-sonic-v1:0"
NOVA_2_5_SONIC: Final = "amazon.nova-2-5-sonic"
DEFAULT_MODEL_ID: Final = NOVA_2_5_SONIC
"""The model the current peers default to (Pipecat 1.13+, Strands `BidiAgent` 1.58+): docs/nova-sonic.md."""


class Generation(enum.StrEnum):
    """The rules a model follows on the wire."""

    SONIC_1 = "nova-sonic"
    """Audio in, audio out; no text input during a session, no endpointing setting."""
    SONIC_2 = "nova-2-sonic"
    """Adds cross-modal text input, ``turnDetectionConfiguration``, asynchronous tools and polyglot voices."""


NEWEST_GENERATION: Final = Generation.SONIC_2

_NOVA_2_VOICES = frozenset(
    {
        *("matthew", "tiffany", "amy", "olivia", "lupe", "carlos", "ambre", "florian", "tina", "lennart"),
        *("beatrice", "lorenzo", "carolina", "leo", "arjun", "kiara"),
    }
)
_NOVA_2_REGIONS = ("us-east-1", "us-west-2", "eu-north-1", "ap-northeast-1")


@dataclass(frozen=True)
class Model:
    """One Nova Sonic model as novabridge treats it."""

    model_id: str
    name: str
    generation: Generation
    voices: frozenset[str]
    regions: tuple[str, ...]
    """Where Bedrock offers it, as far as known: a region outside the list is worth a warning, not a refusal."""
    end_of_life: datetime.date | None = None
    known: bool = True
    """False for an id this release does not know: it is given the newest generation's rules."""

    @property
    def cross_modal(self) -> bool:
        """Takes typed text during a session (and so is asked a cut turn again as text)."""
        return self.generation is not Generation.SONIC_1

    @property
    def asynchronous_tools(self) -> bool:
        """Keeps waiting for a tool's result through barge-ins and new turns, and answers it when it comes."""
        return self.generation is not Generation.SONIC_1

    def retired(self, today: datetime.date | None = None) -> bool:
        """Past its end of life: Bedrock no longer serves it."""
        return self.end_of_life is not None and (today or datetime.date.today()) >= self.end_of_life


MODELS: Final[dict[str, Model]] = {
    model.model_id: model
    for model in (
        Model(
            NOVA_SONIC_V1,
            "Nova Sonic",
            Generation.SONIC_1,
            frozenset(
                {"tiffany", "matthew", "amy", "ambre", "florian", "beatrice", "lorenzo", "greta", "lennart", "lupe"}
                | {"carlos"}
            ),
            ("us-east-1", "ap-northeast-1"),
            end_of_life=datetime.date(2026, 9, 14),
        ),
        Model(NOVA_2_SONIC, "Nova 2 Sonic", Generation.SONIC_2, _NOVA_2_VOICES, _NOVA_2_REGIONS),
        Model(NOVA_2_5_SONIC, "Nova 2.5 Sonic", Generation.SONIC_2, _NOVA_2_VOICES, _NOVA_2_REGIONS),
    )
}
MODEL_IDS: Final = frozenset(MODELS)
VOICES: Final = {model_id: model.voices for model_id, model in MODELS.items()}
REGIONS: Final = {model_id: model.regions for model_id, model in MODELS.items()}
_NEWEST = MODELS[NOVA_2_5_SONIC]


def model_for(model_id: str) -> Model:
    """The model ``model_id`` names; an unknown id gets the newest generation's rules (``known`` is False)."""
    if model_id in MODELS:
        return MODELS[model_id]
    return Model(model_id, model_id, NEWEST_GENERATION, _NEWEST.voices, _NEWEST.regions, known=False)
