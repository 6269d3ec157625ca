"""`History`, the conversation a new stream resumes from (the session's and the bridge's), without a stream."""

import itertools
import threading

import pytest
from novabridge.sonic.config import HistoryMessage
from novabridge.sonic.history import History
from novabridge.sonic.wire import HISTORY_LIMIT_BYTES, trim_history


def test_messages_keep_their_order_and_consecutive_ones_of_a_role_merge() -> None:
    history = History()
    history.add("USER", "Hello.")
    history.add("ASSISTANT", "Hi!")
    history.add("ASSISTANT", "How can I help?")
    history.add("USER", "The weather.")
    assert history.messages == [
        ("USER", "Hello."),
        ("ASSISTANT", "Hi! How can I help?"),
        ("USER", "The weather."),
    ]


@pytest.mark.parametrize("blank", ["", " ", "\n\t "])
def test_blank_text_is_not_a_message_and_text_is_stripped(blank: str) -> None:
    history = History()
    history.add("USER", blank)
    assert history.messages == []
    history.add("USER", "  spaced out \n")
    history.add("USER", blank)
    assert history.messages == [("USER", "spaced out")]


def test_an_initial_history_goes_through_the_same_rules() -> None:
    initial = (
        HistoryMessage(role="USER", text=" a "),
        HistoryMessage(role="USER", text="b"),
        HistoryMessage(role="ASSISTANT", text="c"),
    )
    assert History(initial).messages == [("USER", "a b"), ("ASSISTANT", "c")]


def test_messages_is_a_copy() -> None:
    history = History()
    history.add("USER", "x")
    history.messages.append(("ASSISTANT", "not kept"))
    assert history.messages == [("USER", "x")]


def test_for_replay_is_the_newest_messages_within_the_limit_opening_with_the_user() -> None:
    history = History()
    for n in range(20):
        history.add("USER", f"question {n} " + "q" * 40)
        history.add("ASSISTANT", f"answer {n} " + "a" * 40)
    limit = 300
    replay = history.for_replay(limit)
    assert replay == trim_history(history.messages, limit)
    assert replay
    assert replay[0][0] == "USER"
    assert sum(len(text.encode()) for _, text in replay) <= limit
    assert replay == history.messages[-len(replay) :]  # the newest, in order
    assert history.for_replay() == history.messages  # all of it fits the service's 40 KB


def test_for_config_gives_the_replay_as_history_messages() -> None:
    history = History()
    history.add("ASSISTANT", "a greeting nobody asked for")
    history.add("USER", "hi")
    history.add("ASSISTANT", "hello")
    assert history.for_config() == (
        HistoryMessage(role="USER", text="hi"),
        HistoryMessage(role="ASSISTANT", text="hello"),
    )


def test_two_threads_adding_lose_nothing() -> None:
    # The bridge adds typed text from its sending thread and transcripts from its reading one.
    history = History()
    start = threading.Barrier(2)

    def add(role: str) -> None:
        start.wait()
        for n in range(2000):
            history.add(role, f"{role[0]}{n}")

    threads = [threading.Thread(target=add, args=(role,)) for role in ("USER", "ASSISTANT")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    words = [word for _, text in history.messages for word in text.split()]
    assert sorted(words) == sorted([f"U{n}" for n in range(2000)] + [f"A{n}" for n in range(2000)])
    roles = [role for role, _ in history.messages]
    assert all(a != b for a, b in itertools.pairwise(roles))  # merged: no two in a row of one role


def test_only_what_a_replay_could_use_is_kept() -> None:
    # The whole conversation was kept, by the session and by the bridge, a hundred bytes and more a turn for as long
    # as the conversation lasted, while a new stream is only ever given the newest 40 KB.
    history = History()
    everything: list[tuple[str, str]] = []
    for n in range(2000):
        for role, text in (("USER", f"question {n} " + "q" * 40), ("ASSISTANT", f"answer {n} " + "a" * 60)):
            history.add(role, text)
            everything.append((role, text))
    kept = history.messages
    assert kept == everything[-len(kept) :]
    sizes = [len(text.encode()) for _, text in kept]
    assert sum(sizes[1:]) <= HISTORY_LIMIT_BYTES < sum(sizes), "back to the first message over the limit, no further"
    for limit in (HISTORY_LIMIT_BYTES, 1000, 50):
        assert history.for_replay(limit) == trim_history(everything, limit)
