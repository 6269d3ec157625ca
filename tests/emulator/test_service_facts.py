"""The emulator's copy of the service's facts, pinned to the documents they come from.

The emulator keeps its own copy rather than the client's (novabridge.sonic.wire) so that a mistake in one shows as a
disagreement; both are checked here against the literal values of the sources.
"""

from novabridge.emulator import service
from novabridge.sonic import models, wire

V1 = "amazon.nova-sonic-v1:0"
NOVA_2 = "amazon.nova-2-sonic-v1:0"
NOVA_2_5 = "amazon.nova-2-5-sonic"  # as Pipecat 1.14 and Strands 1.62 send it (docs/nova-sonic.md, "Models")
V1_VOICES = {
    "tiffany",
    "matthew",
    "amy",
    "ambre",
    "florian",
    "beatrice",
    "lorenzo",
    "greta",
    "lennart",
    "lupe",
    "carlos",
}
NOVA_2_VOICES = {
    *("matthew", "tiffany", "amy", "olivia", "lupe", "carlos", "ambre", "florian", "tina", "lennart", "beatrice"),
    *("lorenzo", "carolina", "leo", "arjun", "kiara"),
}


def test_the_emulator_does_not_take_its_facts_from_the_client() -> None:
    assert service.MODEL_IDS is not models.MODEL_IDS
    assert service.VOICES is not models.VOICES


def test_model_ids_and_voices_are_the_documented_ones() -> None:
    for facts in (service, models):
        assert {V1, NOVA_2, NOVA_2_5} == facts.MODEL_IDS
        assert facts.VOICES == {V1: V1_VOICES, NOVA_2: NOVA_2_VOICES, NOVA_2_5: NOVA_2_VOICES}


def test_limits_and_markers_are_the_documented_ones() -> None:
    for facts in (service, wire):
        assert facts.TEXT_INPUT_LIMIT_BYTES == 1024  # Nova 2 user guide, "Managing chat history": 1 KB per textInput
        assert facts.HISTORY_LIMIT_BYTES == 40 * 1024  # the same page: 40 KB of history in all
        assert facts.EVENT_LIMIT_BYTES == 1_000_000  # Bedrock API Reference, BidirectionalInputPayloadPart.bytes
        assert facts.BARGE_IN_MARKER == '{ "interrupted" : true }'
    assert service.CONNECTION_LIFETIME_S == 8 * 60  # the 8-minute connection limit
    assert {8000, 16000, 24000} == service.SAMPLE_RATES
