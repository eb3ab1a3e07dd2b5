"""Stop sequences: the text ends where one begins; what might begin one is held back, never taken back."""

from __future__ import annotations

import pytest

from charlstm.errors import ConfigError
from charlstm.generation.stops import MAX_STOPS, StopMatcher, check_stops, cut_at_stop


def fed(text: str, stops: list[str]) -> tuple[list[str], StopMatcher]:
    matcher = StopMatcher(stops)
    return [matcher.feed(ch) for ch in text], matcher


def test_the_text_ends_before_the_stop_sequence():
    assert cut_at_stop("Alice said. Then", [". "]) == ("Alice said", True)
    assert cut_at_stop("no stop here", ["\n\n"]) == ("no stop here", False)


def test_what_may_begin_a_stop_is_held_until_it_cannot():
    shown, matcher = fed("a\nb\n\nc", ["\n\n"])
    assert shown == ["a", "", "\nb", "", "", ""]  # a newline waits for the next; after the stop, nothing
    assert matcher.stopped


def test_a_false_start_is_shown_whole_and_a_flush_gives_what_was_held():
    shown, matcher = fed("xab", ["abc"])
    assert "".join(shown) == "x" and not matcher.stopped
    assert matcher.flush() == "ab" and matcher.flush() == ""


def test_when_two_stops_end_together_the_text_ends_where_the_longer_began():
    assert cut_at_stop("xxab", ["b", "ab"]) == ("xx", True)


def test_a_stop_inside_a_held_prefix_is_found():
    # "aab" with stop "ab": the first "a" is shown once the second "a" shows it is no start of "ab".
    assert cut_at_stop("aab", ["ab"]) == ("a", True)


def test_no_stops_pass_every_character_through():
    shown, matcher = fed("abc", [])
    assert shown == ["a", "b", "c"] and matcher.flush() == ""


@pytest.mark.parametrize("stops", [[""], ["x" * 101], ["a"] * (MAX_STOPS + 1)])
def test_bad_stop_lists_are_config_errors(stops):
    with pytest.raises(ConfigError):
        check_stops(stops)
