# SPDX-License-Identifier: Apache-2.0
"""The Nova Sonic models novabridge knows: their ids, voices and regions (docs/nova-sonic.md cites the sources)."""

from __future__ import annotations

from typing import Final

NOVA_SONIC_V1: Final = "amazon.nova-sonic-v1:0"
NOVA_2_SONIC: Final = "amazon.nova-2-sonic-v1:0"
MODEL_IDS = frozenset({NOVA_SONIC_V1, NOVA_2_SONIC})

VOICES: dict[str, frozenset[str]] = {
    NOVA_SONIC_V1: frozenset(
        {"tiffany", "matthew", "amy", "ambre", "florian", "beatrice", "lorenzo", "greta", "lennart", "lupe", "carlos"}
    ),
    NOVA_2_SONIC: frozenset(
        {
            "matthew",
            "tiffany",
            "amy",
            "olivia",
            "lupe",
            "carlos",
            "ambre",
            "florian",
            "tina",
            "lennart",
            "beatrice",
            "lorenzo",
            "carolina",
            "leo",
            "arjun",
            "kiara",
        }
    ),
}

REGIONS: dict[str, tuple[str, ...]] = {
    NOVA_SONIC_V1: ("us-east-1", "ap-northeast-1"),
    NOVA_2_SONIC: ("us-east-1", "us-west-2", "ap-northeast-1"),
}
"""Where Bedrock offers each model, as peers' code lists it (docs/nova-sonic.md, "The API and the SDK"); the list
grows, so a region outside it is worth a warning, not a refusal."""
