"""`UplinkClock`, the worker's timing of the uplink hop: each SDK send is dated by the host record that completed its
frame. Without processes: offsets and times are given."""

import pytest

pytest.importorskip("aws_sdk_bedrock_runtime", reason="the worker runs the session on the Nova Sonic SDK (Python 3.12)")

from novabridge.worker.uplink_clock import UplinkClock

MS = 1_000_000  # nanoseconds


def test_a_frame_is_dated_by_the_record_that_held_its_last_byte() -> None:
    clock = UplinkClock()
    # 20 ms records (640 bytes) written at 0, 20, 40 and 60 ms; the session sends 32 ms frames (1024 bytes).
    for index in range(4):
        clock.received(640 * (index + 1), 20 * index * MS)
    clock.sent(1024, 25 * MS)  # bytes 0-1023: byte 1023 came in the second record, written at 20 ms
    clock.sent(2048, 65 * MS)  # bytes 1024-2047: byte 2047 came in the fourth, written at 60 ms
    assert clock.samples == [pytest.approx(0.005), pytest.approx(0.005)]


def test_a_frame_ending_exactly_with_a_record_settles_it() -> None:
    clock = UplinkClock()
    clock.received(1024, 0)
    clock.received(2048, 10 * MS)
    clock.sent(1024, 3 * MS)
    clock.sent(2048, 12 * MS)
    assert clock.samples == [pytest.approx(0.003), pytest.approx(0.002)]


def test_records_inside_one_frame_give_one_sample() -> None:
    clock = UplinkClock()
    for index in range(8):  # 8 records of 128 bytes, 1 ms apart: one 1024-byte frame
        clock.received(128 * (index + 1), index * MS)
    clock.sent(1024, 10 * MS)
    assert clock.samples == [pytest.approx(0.003)]  # from the last record, written at 7 ms


def test_a_send_with_no_host_audio_pending_is_not_timed() -> None:
    # Silence the session fills in, or a replay, is not a host record's hop.
    clock = UplinkClock()
    clock.sent(1024, 5 * MS)
    assert clock.samples == []
    clock.received(640, 6 * MS)
    clock.sent(640, 7 * MS)
    clock.sent(1664, 8 * MS)
    assert clock.samples == [pytest.approx(0.001)]
