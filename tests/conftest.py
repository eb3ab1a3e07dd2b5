"""Shared tiny fixtures: small, deterministic, generated in code (no files shipped)."""

from __future__ import annotations

import random

import pytest

_WORDS = [
    "alice", "rabbit", "queen", "king", "hatter", "cat", "tea", "garden", "door", "key", "little",
    "very", "said", "thought", "the", "a", "and", "of", "to", "in", "was", "she", "it", "her", "down",
    "with", "what", "for", "on",
]


def make_tiny_text(num_sentences: int = 120, seed: int = 0) -> str:
    """English-like text of a few KB: capitalised sentences, commas, paragraphs."""
    rng = random.Random(seed)
    sentences = []
    for i in range(num_sentences):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 12))]
        if len(words) > 6:
            words[3] += ","
        sentence = " ".join(words).capitalize() + rng.choice(".!?")
        sentences.append(sentence + ("\n\n" if i % 8 == 7 else " "))
    return "".join(sentences).strip() + "\n"


@pytest.fixture
def tiny_text() -> str:
    """A few KB of deterministic English-like text."""
    return make_tiny_text()


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models run faster on one thread, and far faster on a CPU shared with other work."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
