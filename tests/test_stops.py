"""Stop sequences: the text ends where one begins; what might begin one is held back, never taken back."""

from __future__ import annotations

import random

import pytest

from _reference import cut_at_stop
from charlstm.errors import ConfigError
from charlstm.generation.stops import MAX_STOPS, SampleStops, StopMatcher, check_stops


def fed(text: str, stops: list[str]) -> tuple[list[str], StopMatcher]:
    matcher = StopMatcher(stops)
    return [matcher.feed(ch) for ch in text], matcher


def matched(text: str, stops: list[str]) -> tuple[str, bool]:
    """``text`` fed to a StopMatcher until it stops: what was shown (a flush at its end), and whether."""
    shown, matcher = fed(text, stops)
    return "".join(shown) + matcher.flush(), matcher.stopped


def test_the_text_ends_before_the_stop_sequence():
    assert matched("Alice said. Then", [". "]) == ("Alice said", True)
    assert matched("no stop here", ["\n\n"]) == ("no stop here", False)


def test_the_matcher_cuts_as_the_naive_reference_on_random_texts():
    rng = random.Random(0)

    def letters(low: int, high: int) -> str:  # three letters: stops overlap and begin again often
        return "".join(rng.choice("abc") for _ in range(rng.randint(low, high)))

    for _ in range(500):
        text, stops = letters(0, 30), [letters(1, 4) for _ in range(rng.randint(1, 3))]
        assert matched(text, stops) == cut_at_stop(text, stops), (text, stops)


def test_what_may_begin_a_stop_is_held_until_it_cannot():
    shown, matcher = fed("a\nb\n\nc", ["\n\n"])
    assert shown == ["a", "", "\nb", "", "", ""]  # a newline waits for the next; after the stop, nothing
    assert matcher.stopped


def test_a_false_start_is_shown_whole_and_a_flush_gives_what_was_held():
    shown, matcher = fed("xab", ["abc"])
    assert "".join(shown) == "x" and not matcher.stopped
    assert matcher.flush() == "ab" and matcher.flush() == ""


def test_when_two_stops_end_together_the_text_ends_where_the_longer_began():
    assert matched("xxab", ["b", "ab"]) == ("xx", True)


def test_a_stop_inside_a_held_prefix_is_found():
    # "aab" with stop "ab": the first "a" is shown once the second "a" shows it is no start of "ab".
    assert matched("aab", ["ab"]) == ("a", True)


def test_no_stops_pass_every_character_through():
    shown, matcher = fed("abc", [])
    assert shown == ["a", "b", "c"] and matcher.flush() == ""


@pytest.mark.parametrize("stops", [[""], ["x" * 101], ["a"] * (MAX_STOPS + 1)])
def test_bad_stop_lists_are_config_errors(stops):
    with pytest.raises(ConfigError):
        check_stops(stops)


# ---- SampleStops: every sample of a generation ------------------------------------------------


def test_each_sample_ends_at_its_own_stop_and_the_others_go_on():
    ends = SampleStops(["."], 3)
    shown = [ends.feed_step(step) for step in ["ab.", "a.b", "xyz", "...", "qqq"]]
    assert ["".join(column) for column in zip(*shown, strict=True)] == ["aax", "b", ""]
    assert ends.reasons == ["stop", "stop", "stop"] and ends.all_ended
    assert [ends.stopped(k) for k in range(3)] == [True, True, True]


def test_an_end_hands_out_the_held_text_and_keeps_a_stop_as_the_reason():
    ends = SampleStops(["ab"], 2)
    assert ends.feed_step(["a", "a"]) == ["", ""]  # each "a" may begin "ab"
    assert ends.feed(0, "b") == "" and ends.stopped(0)
    assert not ends.all_ended
    assert ends.end_all("length") == ["", "a"]  # sample 1's held "a" comes out; sample 0 stopped
    assert ends.finish_reasons() == ["stop", "length"]
    assert ends.feed(1, "x") == "" and ends.end(1, "cancelled") == ""  # an ended sample stays ended
    assert ends.finish_reasons() == ["stop", "length"]


def test_without_stops_every_character_passes_and_only_an_end_ends():
    ends = SampleStops([], 2)
    assert ends.feed_step(["a", "b"]) == ["a", "b"] and not ends.all_ended
    assert ends.end(1, "cancelled") == "" and ends.reasons == [None, "cancelled"]
