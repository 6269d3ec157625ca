"""The models novabridge knows (`novabridge.sonic.models`) and what a config makes of a model id, known or not."""

import datetime
import logging

import pydantic
import pytest
from novabridge.exceptions import InvalidInput
from novabridge.replay import Unanswered
from novabridge.sonic import SonicConfig, wire
from novabridge.sonic.config import _check_model_id
from novabridge.sonic.models import (
    DEFAULT_MODEL_ID,
    MODELS,
    NOVA_2_5_SONIC,
    NOVA_2_SONIC,
    NOVA_SONIC_V1,
    Generation,
    model_for,
)

KEYS = {"aws_access_key_id": "a", "aws_secret_access_key": "b"}
UNKNOWN = "amazon.nova-3-sonic"


@pytest.fixture(autouse=True)
def warn_again() -> None:
    _check_model_id.cache_clear()  # each test sees the warning its config gives


def test_the_default_is_nova_2_5_sonic_with_nova_2_rules() -> None:
    config = SonicConfig(**KEYS)
    assert config.model_id == DEFAULT_MODEL_ID == NOVA_2_5_SONIC == "amazon.nova-2-5-sonic"
    model = model_for(config.model_id)
    assert model.name == "Nova 2.5 Sonic"
    assert model.generation is Generation.SONIC_2
    assert model.voices == MODELS[NOVA_2_SONIC].voices
    assert model.cross_modal
    assert not model.retired(datetime.date(2026, 12, 2))


def test_nova_2_5_sonic_takes_what_nova_2_takes(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "novabridge.sonic"):
        config = SonicConfig(**KEYS, model_id=NOVA_2_5_SONIC, voice="tina", endpointing="LOW")
    assert caplog.records == []
    assert wire.check_text("hello", config.model_id) == "hello"
    assert Unanswered(config).asks == []


def test_v1_is_taken_with_a_warning_that_it_reached_its_end_of_life(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "novabridge.sonic"):
        SonicConfig(**KEYS, model_id=NOVA_SONIC_V1, voice="greta")
        SonicConfig(**KEYS, model_id=NOVA_SONIC_V1, voice="greta")  # once per process: host and worker both validate
    assert [r.getMessage() for r in caplog.records] == [
        (
            "Nova Sonic (amazon.nova-sonic-v1:0) reached its end of life on 2026-09-14: Bedrock no longer serves it; "
            "choose amazon.nova-2-5-sonic"
        )
    ]
    v1 = MODELS[NOVA_SONIC_V1]
    assert v1.retired(datetime.date(2026, 9, 14))
    assert not v1.retired(datetime.date(2026, 9, 13))
    with pytest.raises(InvalidInput, match="needs a Nova 2 generation model"):
        wire.check_text("hello", NOVA_SONIC_V1)


def test_an_unknown_model_is_taken_with_a_warning_and_the_newest_generations_rules(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "novabridge.sonic"):
        config = SonicConfig(**KEYS, model_id=UNKNOWN, voice="kiara", endpointing="HIGH")
    assert [r.getMessage() for r in caplog.records] == [
        (
            "model 'amazon.nova-3-sonic' is not one novabridge knows; it is given nova-2-sonic's rules (the newest "
            "generation it knows)"
        )
    ]
    model = model_for(config.model_id)
    assert not model.known
    assert model.generation is Generation.SONIC_2
    assert model.voices == MODELS[NOVA_2_5_SONIC].voices
    assert wire.check_text("hello", UNKNOWN) == "hello"
    with pytest.raises(pydantic.ValidationError, match=r"voice .greta. is not a voice of amazon\.nova-3-sonic"):
        SonicConfig(**KEYS, model_id=UNKNOWN, voice="greta")


@pytest.mark.parametrize("model_id", ["", "amazon nova", "amazon.nova-2-sonic\n", "模型"])
def test_a_model_id_that_is_no_bedrock_id_is_refused(model_id: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="model_id"):
        SonicConfig(**KEYS, model_id=model_id)


def test_an_inference_profile_arn_is_a_model_id() -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-2-sonic-v1:0"
    assert SonicConfig(**KEYS, model_id=arn).model_id == arn
