"""Unit tests of the emulator's parts, without a network: wire codec, VAD, voice, scenarios, faults, recording, certs.

Client frames are built the way the SDK builds them: a signed envelope (``:date``, ``:chunk-signature``) around the
``chunk`` event, whose JSON payload carries the Nova Sonic event as base64 ``bytes``.
"""

import base64
import datetime
import hashlib
import io
import ipaddress
import json
import ssl
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip(
    "aws_sdk_bedrock_runtime", reason="the session and the emulator run on the Nova Sonic SDK (Python 3.12)"
)

from aws_sdk_signers import AsyncEventSigner, AWSCredentialIdentity, SigV4SigningProperties
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from novabridge.emulator.certs import CertificateFiles, write_certificates
from novabridge.emulator.faults import (
    CONNECT_FAULTS,
    MID_TURN_FAULTS,
    STREAM_FAULTS,
    Fault,
    FaultKind,
    FaultPlan,
)
from novabridge.emulator.recording import StreamRecording, TurnRecord, summarize_audio_event
from novabridge.emulator.scenario import (
    DEFAULT_ANSWER,
    DEFAULT_USER,
    Scenario,
    ScenarioError,
    ToolCall,
    Turn,
    render,
)
from novabridge.emulator.vad import EnergyVad, SpeechEnded, SpeechStarted, VadEvent
from novabridge.emulator.voice import base_pitch_hz, split_sentences, synthesize
from novabridge.emulator.wire import (
    MAX_MESSAGE_BYTES,
    InputDecoder,
    InputEvent,
    WireError,
    encode_exception,
    encode_output_event,
    truncated_frame,
)
from smithy_aws_event_stream.events import Event, EventHeaderEncoder, EventMessage
from smithy_aws_event_stream.exceptions import InvalidEventBytes
from support.wire_frames import CHUNK_HEADERS, Body, chunk, client_frame, signed, wrapper_for

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------------------------------------ wire


def crc_frame(headers: bytes, payload: bytes) -> bytes:
    """An event-stream frame with correct checksums around arbitrary header bytes."""
    total = 16 + len(headers) + len(payload)
    prelude = struct.pack("!II", total, len(headers))
    prelude_crc = zlib.crc32(prelude)
    message = struct.pack("!I", prelude_crc) + headers + payload
    return prelude + message + struct.pack("!I", zlib.crc32(message, prelude_crc))


def feed_all(decoder: InputDecoder, data: bytes, cuts: list[int]) -> list[InputEvent]:
    events: list[InputEvent] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        events += decoder.feed(data[start:cut])
        start = cut
    return events


def decode_garbage(data: bytes) -> list[InputEvent]:
    """Feeds ``data``; anything raised must be a WireError (the test sees other exceptions as failures)."""
    try:
        return InputDecoder().feed(data)
    except WireError:
        return []


json_leaves = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
bodies = st.dictionaries(st.text(max_size=12), json_values, max_size=5)


def sample_events(n: int) -> list[Body]:
    return [
        {"event": {"audioInput": {"promptName": "p", "contentName": "a", "content": f"{i:04d}" * 40}}} for i in range(n)
    ]


def test_decoder_reads_sdk_frames_in_order() -> None:
    events = [{"event": {"sessionStart": {}}}, *sample_events(5), {"event": {"sessionEnd": {}}}]
    frames = [client_frame(body) for body in events]
    decoder = InputDecoder()
    decoded = decoder.feed(b"".join(frames))
    assert [e.body for e in decoded] == events
    assert [e.wire_bytes for e in decoded] == [len(f) for f in frames]
    assert not decoder.ended
    assert decoder.feed(signed(b"")) == []
    assert decoder.ended


def test_decoder_takes_one_byte_at_a_time() -> None:
    events = sample_events(3)
    stream = b"".join(client_frame(body) for body in events) + signed(b"")
    decoder = InputDecoder()
    decoded: list[InputEvent] = []
    ended_at: int | None = None
    for i in range(len(stream)):
        decoded += decoder.feed(stream[i : i + 1])
        if decoder.ended and ended_at is None:
            ended_at = i
    assert [e.body for e in decoded] == events
    assert ended_at == len(stream) - 1, "ended must be set by the closing envelope's last byte, not before"


@FUZZ
@given(events=st.lists(bodies, min_size=1, max_size=6), data=st.data())
def test_decoder_is_independent_of_how_the_stream_is_split(events: list[Body], data: st.DataObject) -> None:
    frames = [client_frame(body) for body in events]
    stream = b"".join(frames) + signed(b"")
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=40), label="cuts")
    decoder = InputDecoder()
    decoded = feed_all(decoder, stream, cuts)
    assert [e.body for e in decoded] == events
    assert [e.wire_bytes for e in decoded] == [len(f) for f in frames]
    assert decoder.ended


async def test_decoder_reads_frames_signed_by_the_sdk_event_signer() -> None:
    signer = AsyncEventSigner(initial_signature=b"0" * 64, event_encoder_cls=EventHeaderEncoder)
    identity = AWSCredentialIdentity(access_key_id="AKIDTEST", secret_access_key="secret")
    properties = SigV4SigningProperties(region="us-east-1", service="bedrock")
    events = [{"event": {"sessionStart": {"inferenceConfiguration": {"maxTokens": 1024}}}}, *sample_events(2)]
    stream = b""
    for body in events:
        inner = EventMessage(headers=dict(CHUNK_HEADERS), payload=wrapper_for(json.dumps(body).encode()))
        envelope = await signer.sign(event=inner, identity=identity, properties=properties)
        stream += envelope.encode()
    closing = await signer.sign_empty(event=EventMessage(), identity=identity, properties=properties)
    stream += closing.encode()
    decoder = InputDecoder()
    assert [e.body for e in feed_all(decoder, stream, list(range(0, len(stream), 7)))] == events
    assert decoder.ended


def test_data_after_the_closing_envelope_is_an_error() -> None:
    decoder = InputDecoder()
    decoder.feed(signed(b""))
    assert decoder.ended
    with pytest.raises(WireError, match="after the end"):
        decoder.feed(client_frame({"event": {"sessionEnd": {}}}))


@pytest.mark.parametrize("length", [MAX_MESSAGE_BYTES + 1, 2**31, 2**32 - 1, 0, 15])
def test_an_out_of_range_length_prefix_fails_at_once(length: int) -> None:
    with pytest.raises(WireError, match="out of range"):
        InputDecoder().feed(struct.pack("!I", length))


def test_a_bad_checksum_is_rejected() -> None:
    frame = bytearray(client_frame({"event": {"sessionStart": {}}}))
    frame[-1] ^= 0x01
    with pytest.raises(WireError):
        InputDecoder().feed(bytes(frame))
    frame = bytearray(client_frame({"event": {"sessionStart": {}}}))
    frame[9] ^= 0x80  # the prelude's own checksum
    with pytest.raises(WireError):
        InputDecoder().feed(bytes(frame))


@FUZZ
@given(position=st.integers(min_value=0), bit=st.integers(0, 7))
def test_no_single_bit_flip_yields_an_event(position: int, bit: int) -> None:
    frame = bytearray(client_frame({"event": {"textInput": {"content": "hello"}}}))
    frame[position % len(frame)] ^= 1 << bit
    decoder = InputDecoder()
    try:
        events = decoder.feed(bytes(frame))
    except WireError:
        return
    # Only a length prefix that grew can pass: the decoder then waits for more bytes.
    assert events == []
    assert not decoder.ended
    assert position % len(frame) < 4


@pytest.mark.parametrize(
    "headers",
    [
        {":date": datetime.datetime.now(datetime.UTC)},
        {":chunk-signature": b"\x00" * 32},
        {},
    ],
    ids=["no-signature", "no-date", "no-headers"],
)
def test_an_envelope_without_its_signing_headers_is_rejected(headers: dict[str, Any]) -> None:
    frame = EventMessage(headers=headers, payload=chunk(wrapper_for(b'{"event": {}}'))).encode()
    with pytest.raises(WireError, match="lacks the :"):
        InputDecoder().feed(frame)


@pytest.mark.parametrize(
    "wrapper",
    [
        b"not json",
        b"",
        b'{"bytes": "!!! not base64 !!!"}',
        b'{"bytes": "eyJhIjog"}',  # base64 of a truncated JSON object
        b'{"bytes": 12}',
        b'{"other": "e30="}',
        b'["e30="]',
        b'"e30="',
        wrapper_for(b"[1, 2]"),
        wrapper_for(b'"an event"'),
        wrapper_for(b"3"),
        wrapper_for(b"null"),
        wrapper_for(b"\xff\xfe{}"),
        wrapper_for(b""),
    ],
)
def test_a_chunk_that_is_not_a_base64_json_object_is_rejected(wrapper: bytes) -> None:
    with pytest.raises(WireError):
        InputDecoder().feed(signed(chunk(wrapper)))


@pytest.mark.parametrize(
    "headers",
    [
        {**CHUNK_HEADERS, ":event-type": "audioInput"},
        {**CHUNK_HEADERS, ":message-type": "exception"},
        {":content-type": "application/json"},
    ],
)
def test_an_inner_message_that_is_not_a_chunk_event_is_rejected(headers: dict[str, str]) -> None:
    with pytest.raises(WireError, match="chunk event"):
        InputDecoder().feed(signed(chunk(b'{"bytes": "e30="}', headers)))


def test_an_envelope_around_garbage_is_rejected() -> None:
    with pytest.raises(WireError, match="chunk event"):
        InputDecoder().feed(signed(b"\x00\x00\x00\x20garbage that is not a frame"))


def test_a_header_of_unknown_type_is_a_wire_error() -> None:
    # Type 10 does not exist (0-9 are defined); the checksums are right, so only the header parser can object.
    with pytest.raises(WireError):
        InputDecoder().feed(crc_frame(b"\x01a\x0a", b""))


def test_deeply_nested_json_is_a_wire_error() -> None:
    with pytest.raises(WireError):
        InputDecoder().feed(signed(chunk(wrapper_for(b"[" * 100_000))))


@FUZZ
@given(data=st.binary(max_size=600))
def test_random_bytes_raise_only_wire_errors(data: bytes) -> None:
    assert decode_garbage(data) == []


@FUZZ
@given(headers=st.binary(max_size=80), payload=st.binary(max_size=80))
def test_frames_with_good_checksums_and_random_contents_raise_only_wire_errors(headers: bytes, payload: bytes) -> None:
    decode_garbage(crc_frame(headers, payload))
    decode_garbage(signed(crc_frame(headers, payload)))
    decode_garbage(signed(chunk(payload)))


header_fields = st.lists(
    st.tuples(st.text(min_size=1, max_size=12), st.integers(0, 255), st.binary(max_size=24)), min_size=1, max_size=4
)


@FUZZ
@given(fields=header_fields, payload=st.binary(max_size=40))
def test_structured_random_headers_raise_only_wire_errors(fields: list[tuple[str, int, bytes]], payload: bytes) -> None:
    headers = b""
    for key, kind, value in fields:
        name = key.encode()[:255]
        headers += bytes([len(name)]) + name + bytes([kind]) + value
    decode_garbage(crc_frame(headers, payload))
    decode_garbage(signed(crc_frame(headers, payload)))


@FUZZ
@given(header_bytes=st.binary(max_size=60))
def test_random_header_bytes_after_valid_headers_raise_only_wire_errors(header_bytes: bytes) -> None:
    valid = EventMessage(headers={":date": datetime.datetime.now(datetime.UTC), ":chunk-signature": b"s"})
    headers = valid._get_headers_bytes() + header_bytes
    decode_garbage(crc_frame(headers, chunk(wrapper_for(b"{}"))))


@FUZZ
@given(body=bodies)
def test_output_events_round_trip_through_the_sdk_decoder(body: Body) -> None:
    source = io.BytesIO(encode_output_event(body) + encode_output_event({"event": {"completionEnd": {}}}))
    first = Event.decode(source)
    assert first is not None
    assert dict(first.message.headers) == CHUNK_HEADERS
    wrapper = json.loads(first.message.payload)
    assert set(wrapper) == {"bytes"}
    assert json.loads(base64.b64decode(wrapper["bytes"], validate=True)) == body
    second = Event.decode(source)
    assert second is not None
    assert json.loads(base64.b64decode(json.loads(second.message.payload)["bytes"])) == {"event": {"completionEnd": {}}}
    assert Event.decode(source) is None


def test_exceptions_carry_the_union_member_and_message() -> None:
    event = Event.decode(io.BytesIO(encode_exception("validationException", "Bad input.", reason="x")))
    assert event is not None
    assert dict(event.message.headers) == {
        ":message-type": "exception",
        ":exception-type": "validationException",
        ":content-type": "application/json",
    }
    assert json.loads(event.message.payload) == {"message": "Bad input.", "reason": "x"}


def test_a_truncated_frame_makes_the_sdk_decoder_raise_invalid_event_bytes() -> None:
    partial = truncated_frame()
    assert 0 < len(partial) < 16
    assert encode_output_event({"event": {"truncated": {}}}).startswith(partial)
    source = io.BytesIO(encode_output_event({"event": {"completionEnd": {}}}) + partial)
    assert Event.decode(source) is not None
    with pytest.raises(InvalidEventBytes):
        Event.decode(source)


# ------------------------------------------------------------------------------------------------------ vad

RATE = 16000


def tone(seconds: float, *, rate: int = RATE, level: float = 0.25, hz: float = 220.0) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    return np.round(np.sin(2 * np.pi * hz * t) * level * 32767).astype("<i2").tobytes()


def silence(seconds: float, *, rate: int = RATE) -> bytes:
    return bytes(2 * round(seconds * rate))


def feed_in_frames(vad: EnergyVad, pcm: bytes, frame_s: float = 0.01) -> list[tuple[float, VadEvent]]:
    """Feed 10 ms at a time; each event with the analysed position at which it came out."""
    step = 2 * round(frame_s * vad.rate)
    out: list[tuple[float, VadEvent]] = []
    for i in range(0, len(pcm), step):
        out += [(vad.position_s, event) for event in vad.feed(pcm[i : i + step])]
    return out


def times(events: list[VadEvent]) -> list[tuple[str, float] | tuple[str, float, float]]:
    """Events as (kind, seconds...) rounded to the microsecond, to compare with decimal literals."""
    return [
        ("start", round(e.at_s, 6)) if isinstance(e, SpeechStarted) else ("end", round(e.at_s, 6), round(e.voiced_s, 6))
        for e in events
    ]


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
def test_vad_reports_where_speech_started_and_ended(rate: int) -> None:
    vad = EnergyVad(rate, pause_s=0.3)
    events = vad.feed(silence(0.5, rate=rate) + tone(1.0, rate=rate) + silence(1.0, rate=rate))
    assert times(events) == [("start", 0.5), ("end", 1.5, 1.0)]
    assert not vad.in_speech
    assert vad.position_s == pytest.approx(2.5)


@pytest.mark.parametrize("pause_s", [0.25, 0.3, 0.305, 0.7, 1.75])
def test_speech_ends_after_exactly_the_pause(pause_s: float) -> None:
    vad = EnergyVad(RATE, pause_s=pause_s)
    timeline = feed_in_frames(vad, silence(0.2) + tone(0.5) + silence(pause_s + 0.5))
    assert [type(e) for _, e in timeline] == [SpeechStarted, SpeechEnded]
    (_, started), (ended_at, ended) = timeline
    assert times([started]) == [("start", 0.2)]
    assert isinstance(ended, SpeechEnded)
    assert ended.at_s == pytest.approx(0.7)
    assert ended.voiced_s == pytest.approx(0.5)
    assert pause_s - 1e-9 <= ended_at - ended.at_s < pause_s + 0.01


def test_speech_does_not_end_one_frame_before_the_pause() -> None:
    vad = EnergyVad(RATE, pause_s=0.4)
    assert [type(e) for e in vad.feed(tone(0.3) + silence(0.39))] == [SpeechStarted]
    assert vad.in_speech
    assert [type(e) for e in vad.feed(silence(0.01))] == [SpeechEnded]
    assert not vad.in_speech


def test_a_short_gap_inside_speech_does_not_end_it() -> None:
    vad = EnergyVad(RATE, pause_s=0.3)
    events = vad.feed(tone(0.4) + silence(0.29) + tone(0.4) + silence(0.5))
    assert times(events) == [("start", 0.0), ("end", 1.09, 0.8)]


def test_clicks_shorter_than_the_onset_are_ignored() -> None:
    vad = EnergyVad(RATE, pause_s=0.3, onset_s=0.06)
    click = tone(0.05) + silence(0.2)
    assert vad.feed(click * 6) == []
    assert not vad.in_speech
    # Six voiced frames make an onset; the start is where the run began.
    assert times(vad.feed(tone(0.06))) == [("start", 1.5)]


def test_audio_below_the_threshold_is_silence() -> None:
    quiet = tone(1.0, level=10 ** (-50 / 20) * np.sqrt(2))  # -50 dBFS RMS
    assert EnergyVad(RATE, pause_s=0.3).feed(quiet + silence(0.5)) == []
    loud = EnergyVad(RATE, pause_s=0.3, threshold_dbfs=-60.0)
    assert [type(e) for e in loud.feed(quiet + silence(0.5))] == [SpeechStarted, SpeechEnded]


def test_vad_hears_the_synthetic_voice() -> None:
    vad = EnergyVad(RATE, pause_s=0.4)
    events = vad.feed(silence(0.3) + synthesize("Hello there, how are you today?", voice="matthew", rate=RATE))
    events += vad.feed(silence(0.5))
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    assert events[0].at_s == pytest.approx(0.3, abs=0.011)


VAD_AUDIO = silence(0.3) + tone(0.4) + silence(0.2) + tone(0.3) + silence(0.45) + tone(0.05) + silence(0.1)
VAD_AUDIO += tone(0.5, hz=440.0) + silence(0.6)


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(0, len(VAD_AUDIO)), max_size=30))
def test_vad_events_do_not_depend_on_how_audio_is_split(cuts: list[int]) -> None:
    whole = EnergyVad(RATE, pause_s=0.35)
    expected = whole.feed(VAD_AUDIO)
    assert [type(e) for e in expected] == [SpeechStarted, SpeechEnded, SpeechStarted, SpeechEnded]
    split = EnergyVad(RATE, pause_s=0.35)
    events: list[VadEvent] = []
    start = 0
    for cut in [*sorted(cuts), len(VAD_AUDIO)]:
        events += split.feed(VAD_AUDIO[start:cut])
        start = cut
    assert events == expected
    assert split.position_s == whole.position_s


def test_odd_byte_counts_are_carried_over() -> None:
    vad = EnergyVad(RATE, pause_s=0.3)
    audio = tone(0.2)
    assert vad.feed(audio[:1]) == []
    assert vad.position_s == 0.0
    assert vad.feed(audio[1:321]) == []  # one whole frame: 320 bytes
    assert vad.position_s == pytest.approx(0.01)
    assert vad.feed(audio[321:961]) == []  # 961 bytes in all: three frames and one odd byte
    assert vad.position_s == pytest.approx(0.03)
    assert vad.feed(audio[961:]) == [SpeechStarted(0.0)]
    assert vad.position_s == pytest.approx(0.2)


# ------------------------------------------------------------------------------------------------------ voice

TEXT = "Hello there. How are you today? I am fine, thanks!"


def test_synthesis_is_deterministic() -> None:
    first = synthesize(TEXT, voice="matthew", rate=24000)
    assert first == synthesize(TEXT, voice="matthew", rate=24000)
    assert len(first) > 0
    assert len(first) % 2 == 0


def test_synthesis_is_identical_in_another_process() -> None:
    code = (
        "import hashlib; from novabridge.emulator.voice import synthesize; "
        f"print(hashlib.sha256(synthesize({TEXT!r}, voice='tiffany', rate=16000)).hexdigest())"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == hashlib.sha256(synthesize(TEXT, voice="tiffany", rate=16000)).hexdigest()


def test_longer_text_gives_longer_audio() -> None:
    lengths = [len(synthesize(t, voice="amy", rate=16000)) for t in ("Hi", "Hi there", "Hi there, friend.", TEXT)]
    assert lengths == sorted(set(lengths)), lengths
    assert len(synthesize("Hi.", voice="amy", rate=16000)) > len(synthesize("Hi", voice="amy", rate=16000))


def test_voices_differ() -> None:
    assert base_pitch_hz("matthew") != base_pitch_hz("tiffany")
    matthew = synthesize(TEXT, voice="matthew", rate=16000)
    tiffany = synthesize(TEXT, voice="tiffany", rate=16000)
    assert len(matthew) == len(tiffany), "the rhythm follows the text, not the voice"
    assert matthew != tiffany


def test_rate_scales_the_length() -> None:
    words = len(TEXT.split())
    durations = {rate: len(synthesize(TEXT, voice="leo", rate=rate)) / 2 / rate for rate in (8000, 16000, 24000)}
    assert durations[8000] > 1.0
    for rate, duration in durations.items():
        assert duration == pytest.approx(durations[16000], abs=2 * words / 8000), (rate, durations)


@pytest.mark.parametrize("voice", ["matthew", "tiffany", "amy", "carlos"])
def test_samples_stay_inside_int16_without_clipping(voice: str) -> None:
    samples = np.frombuffer(synthesize(TEXT + " " + TEXT, voice=voice, rate=24000), dtype="<i2").astype(np.int32)
    peak = int(np.abs(samples).max())
    assert 0.1 * 32767 < peak <= round(0.3 * 32767) + 1
    assert np.count_nonzero(samples == 0) < len(samples)


@pytest.mark.parametrize("text", ["", "   ", "...", "?!", "\n"])
def test_text_without_words_gives_no_audio(text: str) -> None:
    assert synthesize(text, voice="matthew", rate=16000) == b""


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("Hello there. How are you? Fine!", ["Hello there.", "How are you?", "Fine!"]),
        ("No punctuation at all", ["No punctuation at all"]),
        ("Wait... what?!", ["Wait...", "what?!"]),
        ("  One.  Two  ", ["One.", "Two"]),
        ("", []),
        ("   ", []),
    ],
)
def test_split_sentences(text: str, sentences: list[str]) -> None:
    assert split_sentences(text) == sentences


# ------------------------------------------------------------------------------------------------------ scenario

SCENARIO = {
    "turns": [
        {"user": "What's the weather?", "assistant": "Let me check.", "tool": {"name": "weather", "input": {"c": 1}}},
        {"assistant": "It is {result[temp]} degrees in {result[city]}."},
        {"user": "Thanks", "assistant": "You're welcome, turn {n} after {seconds:.1f} s."},
    ],
    "default_answer": "Default {n}.",
}


def test_scenario_from_dict() -> None:
    scenario = Scenario.from_dict(SCENARIO)
    assert scenario.turns == (
        Turn(assistant="Let me check.", user="What's the weather?", tool=ToolCall("weather", {"c": 1})),
        Turn(assistant="It is {result[temp]} degrees in {result[city]}."),
        Turn(assistant="You're welcome, turn {n} after {seconds:.1f} s.", user="Thanks"),
    )
    assert scenario.default_answer == "Default {n}."
    assert scenario.default_user == DEFAULT_USER


def test_default_turns_past_the_end() -> None:
    scenario = Scenario.from_dict(SCENARIO)
    assert scenario.turn(2).user == "Thanks"
    assert scenario.turn(3) == Turn(assistant="Default {n}.")
    assert scenario.turn(100) == Turn(assistant="Default {n}.")
    assert Scenario().turn(0) == Turn(assistant=DEFAULT_ANSWER)
    assert Scenario.from_dict({}).turn(0) == Turn(assistant=DEFAULT_ANSWER)


def test_scenario_loads_yaml_and_json(tmp_path: Path) -> None:
    yaml_path = tmp_path / "turns.yaml"
    yaml_path.write_text(
        "turns:\n"
        "  - user: What's the weather?\n"
        "    assistant: Let me check.\n"
        "    tool:\n"
        "      name: weather\n"
        "      input: {c: 1}\n"
        "  - assistant: 'It is {result[temp]} degrees in {result[city]}.'\n"
        "  - user: Thanks\n"
        '    assistant: "You\'re welcome, turn {n} after {seconds:.1f} s."\n'
        "default_answer: Default {n}.\n",
        encoding="utf-8",
    )
    json_path = tmp_path / "turns.json"
    json_path.write_text(json.dumps(SCENARIO), encoding="utf-8")
    assert Scenario.load(yaml_path) == Scenario.load(str(json_path)) == Scenario.from_dict(SCENARIO)


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("missing.yaml", None, "missing.yaml"),
        ("bad.json", "{not json", "bad.json"),
        ("bad.yaml", "turns: [unclosed", "bad.yaml"),
        ("empty.yaml", "", "expected a mapping"),
        ("list.yaml", "- assistant: hi\n", "expected a mapping"),
    ],
)
def test_unusable_scenario_files(tmp_path: Path, name: str, text: str | None, match: str) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError, match=match):
        Scenario.load(path)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ([{"assistant": "hi"}], "expected a mapping with a 'turns' list"),
        ("turns", "expected a mapping"),
        (None, "expected a mapping"),
        ({"turns": [], "voice": "x"}, r"unknown keys \['voice'\]"),
        ({"turns": {"assistant": "hi"}}, "'turns' must be a list"),
        ({"turns": ["hi"]}, "turn 1: expected a mapping"),
        ({"turns": [{"assistant": "hi", "bot": "x"}]}, r"turn 1: unknown keys \['bot'\]"),
        ({"turns": [{"assistant": "ok"}, {"user": "hi"}]}, "turn 2: assistant: expected non-empty text"),
        ({"turns": [{"assistant": ""}]}, "assistant: expected non-empty text"),
        ({"turns": [{"assistant": "   "}]}, "assistant: expected non-empty text"),
        ({"turns": [{"assistant": 42}]}, "assistant: expected non-empty text"),
        ({"turns": [{"assistant": "hi", "user": ""}]}, "user: expected non-empty text"),
        ({"turns": [{"assistant": "hi", "tool": "weather"}]}, "tool must be a mapping with a 'name'"),
        ({"turns": [{"assistant": "hi", "tool": {"input": {}}}]}, "tool must be a mapping with a 'name'"),
        ({"turns": [{"assistant": "hi", "tool": {"name": 3}}]}, "tool must be a mapping with a 'name'"),
        ({"turns": [{"assistant": "hi", "tool": {"name": "w", "input": [1]}}]}, "tool input must be a mapping"),
        ({"turns": [{"assistant": "It is {temperature}."}]}, r"unknown fields \['temperature'\]"),
        ({"turns": [{"assistant": "{n} {result.x} {weather[0]}"}]}, r"unknown fields \['weather'\]"),
        ({"turns": [{"assistant": "unbalanced {"}]}, "turn 1: assistant"),
        ({"default_answer": "Answer {x}"}, r"default_answer: unknown fields \['x'\]"),
        ({"default_user": ""}, "default_user: expected non-empty text"),
        ({"default_user": "{who} said"}, r"default_user: unknown fields \['who'\]"),
    ],
)
def test_scenario_errors(data: Any, match: str) -> None:
    with pytest.raises(ScenarioError, match=match):
        Scenario.from_dict(data, source="test.yaml")


def test_scenario_errors_name_the_source() -> None:
    with pytest.raises(ScenarioError, match=r"^my-file\.yaml: turn 1: unknown keys"):
        Scenario.from_dict({"turns": [{"assistant": "x", "extra": 1}]}, source="my-file.yaml")


def test_render_fills_the_turn_fields() -> None:
    assert render("Turn {n}, {seconds:.1f} s.", n=3, seconds=1.25) == "Turn 3, 1.2 s."
    assert render("Turn {n}, {seconds:.2f} s.", n=1, seconds=0.5) == "Turn 1, 0.50 s."


def test_render_quotes_result_fields() -> None:
    result = {"temp": 21, "city": "Paris", "wind": {"speed": 5}, "tags": ["a", "b"]}
    template = "It is {result[temp]} degrees in {result[city]}."
    assert render(template, n=1, seconds=0.0, result=result) == "It is 21 degrees in Paris."
    assert render("{result[wind][speed]} km/h", n=1, seconds=0.0, result=result) == "5 km/h"
    assert render("{result[wind]}", n=1, seconds=0.0, result=result) == '{"speed": 5}'
    assert render("{result[tags][1]}", n=1, seconds=0.0, result=result) == "b"


def test_render_quotes_the_whole_result_as_json() -> None:
    result = {"temp": 21, "city": "Paris"}
    assert render("Result: {result}", n=1, seconds=0.0, result=result) == f"Result: {json.dumps(result)}"
    assert render("Result: {result}", n=1, seconds=0.0, result="plain text") == "Result: plain text"
    assert render("Result: {result}", n=1, seconds=0.0, result=[1, 2]) == "Result: [1, 2]"


def test_render_falls_back_to_the_whole_result_for_a_missing_key() -> None:
    result = {"temperature": 21}
    whole = json.dumps(result)
    assert render("It is {result[temp]} degrees.", n=1, seconds=0.0, result=result) == f"It is {whole} degrees."
    assert render("{result[0]} in turn {n}", n=4, seconds=0.0, result=None) == "null in turn 4"
    assert render("{result.city}", n=1, seconds=0.0, result=result) == whole
    assert (
        render("{result[temperature]}, not {result[wind]}", n=1, seconds=0.0, result=result) == f"{whole}, not {whole}"
    )


@pytest.mark.parametrize("result", [{"temperature": 21}, "sunny", [1, 2], None])
def test_render_falls_back_to_the_whole_result_for_a_missing_nested_key(result: Any) -> None:
    whole = result if isinstance(result, str) else json.dumps(result)
    assert render("It is {result[weather][temp]}.", n=2, seconds=0.0, result=result) == f"It is {whole}."


# ------------------------------------------------------------------------------------------------------ faults

KNOWN_KINDS = [
    "throttle",
    "instability",
    "model-stream-error",
    "corrupt-frame",
    "reset",
    "rst-531",
    "expire",
    "slow",
    "reject-input",
    "stall",
]


def test_fault_kinds_are_the_documented_ones() -> None:
    assert [k.value for k in FaultKind] == KNOWN_KINDS
    assert set(FaultKind) == CONNECT_FAULTS | STREAM_FAULTS | MID_TURN_FAULTS
    assert len(CONNECT_FAULTS) + len(STREAM_FAULTS) + len(MID_TURN_FAULTS) == len(FaultKind), "a kind in two groups"


@pytest.mark.parametrize(
    ("spec", "fault"),
    [
        ("throttle", Fault(FaultKind.THROTTLE)),
        (" reset ", Fault(FaultKind.RESET)),
        ("model-stream-error:after_chunks=3,count=2", Fault(FaultKind.MODEL_STREAM_ERROR, count=2, after_chunks=3)),
        ("instability:after_s=1.5", Fault(FaultKind.INSTABILITY, after_s=1.5)),
        ("rst-531:after_s=2", Fault(FaultKind.RST_531, after_s=2.0)),
        ("slow:delay_s=0.25, count=3", Fault(FaultKind.SLOW, delay_s=0.25, count=3)),
        ("corrupt-frame:after_chunks=0", Fault(FaultKind.CORRUPT_FRAME, after_chunks=0)),
        ("expire:", Fault(FaultKind.EXPIRE)),
        ("expire:after_s=0,", Fault(FaultKind.EXPIRE, after_s=0.0)),
    ],
)
def test_fault_parse(spec: str, fault: Fault) -> None:
    parsed = Fault.parse(spec)
    assert parsed == fault
    assert isinstance(parsed.count, int)
    assert isinstance(parsed.after_chunks, int)
    assert isinstance(parsed.after_s, float)


@pytest.mark.parametrize("spec", ["nonsense", "", "Throttle", "throttle-now:count=1", ":count=1"])
def test_an_unknown_fault_lists_the_known_ones(spec: str) -> None:
    with pytest.raises(ValueError, match="unknown fault") as caught:
        Fault.parse(spec)
    for kind in KNOWN_KINDS:
        assert kind in str(caught.value)


@pytest.mark.parametrize("spec", ["throttle:times=2", "throttle:count", "slow:delay=1", "reset:kind=slow", "reset:=1"])
def test_a_bad_fault_parameter_name_lists_the_parameters(spec: str) -> None:
    with pytest.raises(ValueError, match="expected one of count, after_s, after_chunks, delay_s"):
        Fault.parse(spec)


@pytest.mark.parametrize(
    "spec", ["throttle:count=two", "throttle:count=1.5", "instability:after_s=soon", "slow:delay_s=", "reset:count=0x2"]
)
def test_a_fault_parameter_that_is_not_a_number_is_rejected(spec: str) -> None:
    with pytest.raises(ValueError, match="is not a number"):
        Fault.parse(spec)


@pytest.mark.parametrize("spec", ["instability:after_s=nan", "slow:delay_s=nan", "expire:after_s=-nan"])
def test_a_nan_fault_time_is_rejected(spec: str) -> None:
    with pytest.raises(ValueError, match="fault"):
        Fault.parse(spec)


@pytest.mark.parametrize(
    "spec",
    ["throttle:count=0", "throttle:count=-1", "instability:after_s=-0.5", "slow:delay_s=-1", "reset:after_chunks=-1"],
)
def test_negative_fault_values_are_rejected(spec: str) -> None:
    with pytest.raises(ValueError, match="count must be >= 1"):
        Fault.parse(spec)


def test_fault_constructor_validates_and_coerces_the_kind() -> None:
    assert Fault("slow").kind is FaultKind.SLOW  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="count must be >= 1"):
        Fault(FaultKind.SLOW, count=0)
    with pytest.raises(ValueError, match="bogus"):
        Fault("bogus")  # type: ignore[arg-type]


def test_a_fault_fires_count_times() -> None:
    plan = FaultPlan()
    plan.add(Fault(FaultKind.THROTTLE, count=3))
    taken = [plan.take(CONNECT_FAULTS) for _ in range(4)]
    assert [f.count if f is not None else None for f in taken] == [3, 2, 1, None]
    assert all(f is None or f.kind is FaultKind.THROTTLE for f in taken)
    assert plan.pending() == []


def test_take_only_fires_the_asked_kinds_in_order() -> None:
    plan = FaultPlan()
    slow, reset, expire = Fault(FaultKind.SLOW), Fault(FaultKind.RESET, after_chunks=0), Fault(FaultKind.EXPIRE)
    for fault in (slow, reset, expire):
        plan.add(fault)
    assert plan.take(CONNECT_FAULTS) is None
    assert plan.take(STREAM_FAULTS) == slow
    assert plan.pending() == [reset, expire]
    assert plan.take(STREAM_FAULTS) == expire
    assert plan.take(STREAM_FAULTS) is None
    assert plan.take(MID_TURN_FAULTS, chunk=0) == reset
    assert plan.pending() == []


def test_mid_turn_faults_wait_for_their_chunk() -> None:
    plan = FaultPlan()
    late = Fault(FaultKind.MODEL_STREAM_ERROR, after_chunks=3)
    early = Fault(FaultKind.CORRUPT_FRAME, after_chunks=1)
    plan.add(late)
    plan.add(early)
    assert plan.take(MID_TURN_FAULTS, chunk=0) is None
    assert plan.take(MID_TURN_FAULTS, chunk=2) == early
    assert plan.take(MID_TURN_FAULTS, chunk=2) is None
    assert plan.take(MID_TURN_FAULTS, chunk=3) == late
    assert plan.pending() == []
    plan.add(late)
    assert plan.take(MID_TURN_FAULTS) == late, "without a chunk position the threshold does not apply"


def test_clear_disarms_everything() -> None:
    plan = FaultPlan()
    plan.add(Fault(FaultKind.THROTTLE, count=5))
    plan.add(Fault(FaultKind.SLOW))
    plan.clear()
    assert plan.pending() == []
    assert plan.take(frozenset(FaultKind)) is None


def test_fault_plan_is_thread_safe() -> None:
    plan = FaultPlan()
    adders, takers, per_adder, count = 4, 4, 300, 3
    start = threading.Barrier(adders + takers)
    adding_done = threading.Event()
    fired: list[list[Fault]] = [[] for _ in range(takers)]
    errors: list[BaseException] = []

    def add(i: int) -> None:
        try:
            start.wait()
            for j in range(per_adder):
                plan.add(Fault(FaultKind.MODEL_STREAM_ERROR, count=count, after_chunks=i * per_adder + j))
        except BaseException as error:  # noqa: BLE001 (handed to the test)
            errors.append(error)

    def take(i: int) -> None:
        try:
            start.wait()
            while True:
                fault = plan.take(MID_TURN_FAULTS, chunk=10**9)
                if fault is not None:
                    fired[i].append(fault)
                elif adding_done.is_set() and not plan.pending():
                    return
        except BaseException as error:  # noqa: BLE001 (handed to the test)
            errors.append(error)

    add_threads = [threading.Thread(target=add, args=(i,)) for i in range(adders)]
    take_threads = [threading.Thread(target=take, args=(i,)) for i in range(takers)]
    for thread in add_threads + take_threads:
        thread.start()
    for thread in add_threads:
        thread.join(30)
    adding_done.set()
    for thread in take_threads:
        thread.join(30)
    assert not any(t.is_alive() for t in add_threads + take_threads)
    assert errors == []
    all_fired = [f for per_thread in fired for f in per_thread]
    assert len(all_fired) == adders * per_adder * count
    by_fault: dict[int, list[int]] = {}
    for fault in all_fired:
        by_fault.setdefault(fault.after_chunks, []).append(fault.count)
    assert len(by_fault) == adders * per_adder
    assert all(sorted(counts) == [1, 2, 3] for counts in by_fault.values())
    assert plan.pending() == []


# ------------------------------------------------------------------------------------------------------ recording


def test_recording_save_writes_json_and_pcm_with_matching_digests(tmp_path: Path) -> None:
    recording = StreamRecording(7, "amazon.nova-2-sonic-v1:0")
    user = tone(0.3) + silence(0.1)
    assistant = synthesize("Hello there.", voice="matthew", rate=24000)
    recording.user_audio += user
    recording.assistant_audio += assistant
    recording.input_events.append({"event": {"sessionStart": {}}})
    recording.input_events.append(
        summarize_audio_event({"event": {"audioInput": {"content": "x"}}}, "audioInput", user)
    )
    recording.output_events.append({"event": {"completionStart": {}}})
    turn = TurnRecord(index=0, source="speech", user_text="(speech)", answer="Hello there.", speech_end_s=0.3)
    turn.assistant_audio += assistant
    recording.turns.append(turn)
    recording.outcome = "completed"
    recording.closed_at = recording.opened_at + 1.5

    directory = tmp_path / "records" / "nested"
    path = recording.save(directory)

    assert path == directory / "stream-7.json"
    assert (directory / "stream-7-user.pcm").read_bytes() == user
    assert (directory / "stream-7-assistant.pcm").read_bytes() == assistant
    summary = json.loads(path.read_text())
    assert summary["stream_id"] == 7
    assert summary["model_id"] == "amazon.nova-2-sonic-v1:0"
    assert summary["outcome"] == "completed"
    assert summary["error"] is None
    assert summary["user_audio_bytes"] == len(user)
    assert summary["user_audio_sha256"] == hashlib.sha256((directory / "stream-7-user.pcm").read_bytes()).hexdigest()
    assert summary["assistant_audio_bytes"] == len(assistant)
    assert (
        summary["assistant_audio_sha256"]
        == hashlib.sha256((directory / "stream-7-assistant.pcm").read_bytes()).hexdigest()
        == recording.assistant_audio_sha256
    )
    assert summary["duration_s"] == pytest.approx(1.5)
    assert summary["input_events"][1] == {
        "event": {"audioInput": {"content": {"bytes": len(user), "sha256": hashlib.sha256(user).hexdigest()}}}
    }
    assert summary["output_events"] == [{"event": {"completionStart": {}}}]
    assert recording.event_names() == ["sessionStart", "audioInput"]
    assert recording.event_names(sent=True) == ["completionStart"]
    [saved_turn] = summary["turns"]
    assert "assistant_audio" not in saved_turn
    assert saved_turn["assistant_audio_bytes"] == len(assistant)
    assert saved_turn["answer"] == "Hello there."
    assert saved_turn["speech_end_s"] == 0.3


def test_a_recording_written_through_holds_no_audio_or_events_and_saves_them_all(tmp_path: Path) -> None:
    recording = StreamRecording(3, "amazon.nova-2-sonic-v1:0", keep_audio=False)
    recording.write_through(tmp_path)
    frames = [tone(0.032, hz=200 + 10 * n) for n in range(500)]
    recording.add_input_event({"event": {"sessionStart": {}}})
    for frame in frames:
        recording.add_input_event(summarize_audio_event({"event": {"audioInput": {}}}, "audioInput", frame))
        recording.add_user_audio(frame)
    recording.add_output_event({"event": {"completionStart": {"completionId": "c\u00e9"}}})
    assert (recording.input_events, recording.output_events, bytes(recording.user_audio)) == ([], [], b"")

    path = recording.save(tmp_path)
    summary = json.loads(path.read_text())
    assert len(summary["input_events"]) == 1 + len(frames)
    assert summary["input_events"][0] == {"event": {"sessionStart": {}}}
    digests = [e["event"]["audioInput"]["content"]["sha256"] for e in summary["input_events"][1:]]
    assert digests == [hashlib.sha256(frame).hexdigest() for frame in frames]
    assert summary["output_events"] == [{"event": {"completionStart": {"completionId": "c\u00e9"}}}]
    assert summary["user_audio_sha256"] == hashlib.sha256(b"".join(frames)).hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # the events' own files are gone into the summary
        "stream-3-assistant.pcm",
        "stream-3-turns.jsonl",
        "stream-3-user.pcm",
        "stream-3.json",
    ]


def test_recording_save_overwrites_and_handles_empty_audio(tmp_path: Path) -> None:
    recording = StreamRecording(1, "amazon.nova-sonic-v1:0")
    recording.error = ("validationException", "Bad.", "rule")
    recording.save(tmp_path)
    recording.user_audio += b"\x01\x00"
    path = recording.save(tmp_path)
    summary = json.loads(path.read_text())
    assert summary["user_audio_sha256"] == hashlib.sha256(b"\x01\x00").hexdigest()
    assert summary["assistant_audio_sha256"] == hashlib.sha256(b"").hexdigest()
    assert summary["error"] == ["validationException", "Bad.", "rule"]
    assert (tmp_path / "stream-1-assistant.pcm").read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "stream-1-assistant.pcm",
        "stream-1-user.pcm",
        "stream-1.json",
    ]


# ------------------------------------------------------------------------------------------------------ certs


def handshake(files: CertificateFiles, server_hostname: str) -> ssl.SSLObject:
    """A TLS handshake in memory between a server with the emulator's certificate and a client trusting its CA."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(files.cert_file, files.key_file)
    server_context.set_alpn_protocols(["h2"])
    client_context = ssl.create_default_context(cafile=str(files.ca_file))
    client_context.set_alpn_protocols(["h2"])
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(client_in, client_out, server_hostname=server_hostname)
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    client_done = server_done = False
    for _ in range(10):
        if not client_done:
            try:
                client.do_handshake()
                client_done = True
            except ssl.SSLWantReadError:
                pass
        server_in.write(client_out.read())
        if not server_done:
            try:
                server.do_handshake()
                server_done = True
            except ssl.SSLWantReadError:
                pass
        client_in.write(server_out.read())
        if client_done and server_done:
            return client
    raise AssertionError("the in-memory handshake did not finish")


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return write_certificates(tmp_path_factory.mktemp("certs"), hosts=("emulator.test", "10.1.2.3"))


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1", "::1", "emulator.test", "10.1.2.3"])
def test_server_certificate_verifies_against_the_ca(cert_files: CertificateFiles, hostname: str) -> None:
    client = handshake(cert_files, hostname)
    assert client.selected_alpn_protocol() == "h2"
    peer = client.getpeercert()
    assert peer
    assert ("DNS", "localhost") in peer["subjectAltName"]


@pytest.mark.parametrize("hostname", ["example.com", "10.9.9.9"])
def test_other_names_fail_verification(cert_files: CertificateFiles, hostname: str) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(cert_files, hostname)


def test_a_different_ca_is_not_trusted(cert_files: CertificateFiles, tmp_path: Path) -> None:
    other = write_certificates(tmp_path)
    mixed = CertificateFiles(ca_file=other.ca_file, cert_file=cert_files.cert_file, key_file=cert_files.key_file)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(mixed, "localhost")


def test_certificate_contents(cert_files: CertificateFiles) -> None:
    ca = x509.load_pem_x509_certificate(cert_files.ca_file.read_bytes())
    server = x509.load_pem_x509_certificate(cert_files.cert_file.read_bytes())
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "emulator.test"} <= set(sans.get_values_for_type(x509.DNSName))
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"), ipaddress.ip_address("10.1.2.3")} <= set(
        sans.get_values_for_type(x509.IPAddress)
    )
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage
    now = datetime.datetime.now(datetime.UTC)
    assert server.not_valid_before_utc < now < server.not_valid_after_utc
    assert cert_files.key_file.stat().st_mode & 0o077 == 0, "the private key is readable by others"
    assert b"PRIVATE KEY" not in cert_files.ca_file.read_bytes()
    assert b"PRIVATE KEY" not in cert_files.cert_file.read_bytes()


def test_each_run_makes_a_fresh_ca(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_certificates(tmp_path / "a")
    second = write_certificates(tmp_path / "b")
    assert first.ca_file.read_bytes() != second.ca_file.read_bytes()
    assert first.key_file.read_bytes() != second.key_file.read_bytes()
