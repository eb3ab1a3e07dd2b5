"""Stop sequences: a sample ends when its text ends with one of them.

The stop sequence itself is not part of the text (as in OpenAI's completions API), so a
character that may be the start of one is held back until it is known not to be: what is
shown never has to be taken back.
"""

from __future__ import annotations

from collections.abc import Sequence

from charlstm.errors import ConfigError

MAX_STOPS = 4  # OpenAI's limit; each one is checked at every character
MAX_STOP_CHARS = 100


def check_stops(stops: Sequence[str]) -> tuple[str, ...]:
    """``stops`` as a tuple, or ConfigError for an empty one or too many or too long."""
    stops = tuple(stops)
    if len(stops) > MAX_STOPS:
        raise ConfigError(f"at most {MAX_STOPS} stop sequences, not {len(stops)}")
    for stop in stops:
        if not 1 <= len(stop) <= MAX_STOP_CHARS:
            raise ConfigError(f"a stop sequence has 1 to {MAX_STOP_CHARS} characters, not {len(stop)}")
    return stops


class StopMatcher:
    """One sample's watch for its stop sequences, fed a character at a time."""

    def __init__(self, stops: Sequence[str] = ()):
        self.stops = check_stops(stops)
        self.held = ""  # the end of the text so far that may still become a stop sequence
        self.stopped = False

    def feed(self, ch: str) -> str:
        """Take the next character; return the text now certain to be shown ('' after a stop)."""
        if not self.stops:
            return ch
        if self.stopped:
            return ""
        held = self.held + ch
        ending = [s for s in self.stops if held.endswith(s)]
        if ending:  # the longest began first: the text ends where it began
            self.stopped, self.held = True, ""
            return held[: len(held) - max(map(len, ending))]
        # Hold the longest end of the text that some stop sequence begins with.
        keep = next((k for k in range(len(held), 0, -1)
                     if any(s.startswith(held[-k:]) for s in self.stops)), 0)
        self.held = held[len(held) - keep:]
        return held[: len(held) - keep]

    def flush(self) -> str:
        """The held-back text, when the sample ends for another reason (its length, a cancel)."""
        held, self.held = self.held, ""
        return held


class SampleStops:
    """One generation's samples, each watched for its stop sequences, and how each one ended.

    The CLI, the service's per-request path and its scheduler all feed their characters
    through here. A sample ends at a stop sequence ("stop") when one is fed, or for a reason
    of its caller's (its length, a cancel) through ``end``, which hands out its held-back text.
    """

    def __init__(self, stops: Sequence[str], num_samples: int):
        self.matchers = [StopMatcher(stops) for _ in range(num_samples)]
        self.reasons: list[str | None] = [None] * num_samples  # None while a sample goes on

    def feed(self, sample: int, ch: str) -> str:
        """Sample ``sample``'s next character -> its text now certain to be shown ('' once ended)."""
        if self.reasons[sample] is not None:
            return ""
        matcher = self.matchers[sample]
        shown = matcher.feed(ch)
        if matcher.stopped:
            self.reasons[sample] = "stop"
        return shown

    def feed_step(self, step: Sequence[str]) -> list[str]:
        """One character for every sample -> each one's text now certain to be shown."""
        return [self.feed(k, ch) for k, ch in enumerate(step)]

    def stopped(self, sample: int) -> bool:
        return self.reasons[sample] == "stop"

    @property
    def all_ended(self) -> bool:
        return None not in self.reasons

    def end(self, sample: int, reason: str) -> str:
        """End ``sample`` for ``reason`` unless it has ended; returns the text it held back."""
        if self.reasons[sample] is not None:
            return ""
        self.reasons[sample] = reason
        return self.matchers[sample].flush()

    def end_all(self, reason: str) -> list[str]:
        """End every sample still going for ``reason``; each one's held-back text."""
        return [self.end(k, reason) for k in range(len(self.reasons))]

    def finish_reasons(self) -> list[str]:
        """How each sample ended, once all have."""
        return [str(reason) for reason in self.reasons]
