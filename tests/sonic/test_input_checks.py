"""The host-side checks of text and tool results (`novabridge.sonic.wire`), on both interpreters, without a service.

What they refuse would end the service's stream; the limits are the service's documented ones: 1 KB per textInput
(Nova 2 user guide, "Managing chat history") and 1,000,000 bytes per input event (Bedrock API Reference,
BidirectionalInputPayloadPart).
"""

import json
import math

import pytest
from novabridge import InvalidInput, NovaBridgeError
from novabridge.sonic import wire
from novabridge.sonic.models import NOVA_2_SONIC, NOVA_SONIC_V1


def test_invalid_input_is_a_value_error_of_the_hierarchy() -> None:
    assert issubclass(InvalidInput, ValueError)
    assert issubclass(InvalidInput, NovaBridgeError)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hi \ud800 there", r"not valid UTF-8: it holds a lone surrogate '\\ud800' at index 3"),
        ("\udfff", r"lone surrogate '\\udfff' at index 0"),
        ("x" * 1025, "1025 bytes of UTF-8, over the 1024"),
        ("€" * 342, "1026 bytes of UTF-8, over the 1024"),  # 342 characters, 3 bytes each
        ("", "non-empty"),
        ("  \n", "non-empty"),
        (b"bytes", "non-empty string"),
        (None, "non-empty string"),
    ],
)
def test_text_the_service_would_reject_is_refused(text: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        wire.check_text(text, NOVA_2_SONIC)


def test_text_within_one_text_input_is_taken_and_v1_takes_none() -> None:
    assert wire.check_text("x" * 1024, NOVA_2_SONIC) == "x" * 1024
    assert wire.check_text("€" * 341 + "x", NOVA_2_SONIC) == "€" * 341 + "x"  # 1024 bytes
    assert wire.check_text("😀 fine", NOVA_2_SONIC) == "😀 fine"  # a pair of surrogates is one character
    with pytest.raises(InvalidInput, match="needs a Nova 2 generation model"):
        wire.check_text("hello", NOVA_SONIC_V1)


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (float("nan"), "not strict JSON: Out of range float values"),
        ({"temp": math.inf}, "not strict JSON"),
        ([1, -math.inf], "not strict JSON"),
        ({"when": object()}, "not strict JSON: Object of type object"),
        ({1, 2}, "not strict JSON: Object of type set"),
        (b"raw", "not strict JSON: Object of type bytes"),
        ({"name": "\udc00"}, r"a string in it holds a lone surrogate '\\udc00'"),
        ({"\ud800": 1}, "lone surrogate"),
        ('{"name": "\\ud800"}', "lone surrogate"),  # JSON text whose escape spells a lone surrogate
        ("plain \ud800 text", r"lone surrogate '\\ud800' at index 6"),
    ],
)
def test_a_tool_result_that_is_not_strict_json_is_refused(result: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        wire.tool_result_content(result)


def test_a_circular_tool_result_is_refused() -> None:
    looped: dict[str, object] = {}
    looped["self"] = looped
    with pytest.raises(InvalidInput, match="Circular reference"):
        wire.tool_result_content(looped)


def test_tool_results_become_strict_json_text() -> None:
    assert wire.tool_result_content({"temp": 20, "city": "Zürich"}) == '{"temp": 20, "city": "Zürich"}'
    assert wire.tool_result_content('{"temp": 20}') == '{"temp": 20}'  # JSON text goes as it is
    assert wire.tool_result_content("sunny") == '{"result": "sunny"}'  # plain text is wrapped
    assert wire.tool_result_content('{"temp": NaN}') == '{"result": "{\\"temp\\": NaN}"}'  # not JSON: text
    assert wire.tool_result_content(None) == "null"
    assert json.loads(wire.tool_result_content([1, 2.5, True])) == [1, 2.5, True]


def test_the_tool_result_limit_counts_the_result_as_it_travels() -> None:
    limit = wire.TOOL_RESULT_LIMIT_BYTES
    assert limit < wire.EVENT_LIMIT_BYTES == 1_000_000
    overhead = len(json.dumps(json.dumps({"r": ""})))  # the quotes and escapes around and inside the text
    fits = {"r": "x" * (limit - overhead)}
    assert len(json.dumps(wire.tool_result_content(fits))) == limit
    with pytest.raises(InvalidInput, match=f"is {limit + 1} bytes as it travels, over the {limit}"):
        wire.tool_result_content({"r": "x" * (limit - overhead + 1)})
    # Non-ASCII characters travel escaped (\\uXXXX), six bytes each: 200,000 of them are over the limit.
    with pytest.raises(InvalidInput, match="at most 1000000 bytes per input event"):
        wire.tool_result_content({"r": "é" * 200_000})
    # The event the session builds around a result at the limit stays within the service's event limit.
    event = wire.tool_result(f"prompt-{'0' * 36}", f"prompt-{'0' * 36}-block-999999", "t" * 64, "")[1]
    event["event"]["toolResult"]["content"] = wire.tool_result_content(fits)
    assert len(json.dumps(event).encode()) <= wire.EVENT_LIMIT_BYTES


@pytest.mark.parametrize("tool_use_id", ["", None, 7, "bad \ud800"])
def test_a_tool_use_id_must_be_a_string(tool_use_id: object) -> None:
    with pytest.raises(InvalidInput, match="tool_use_id"):
        wire.check_tool_use_id(tool_use_id)
