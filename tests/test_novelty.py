"""The novelty measures on hand-made strings with known answers, and against brute-force references."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from charlstm.analysis.novelty import DEFAULT_NS, ITEM_GROUPS, ListItems, NoveltyIndex, item_novelty, words
from charlstm.errors import ConfigError
from charlstm.generation.items import Item, ItemDraw


# One sample against one text: an index per call, as the report never does (it builds one).
def ngram_overlap(sample: str, text: str, n: int) -> float | None:
    return NoveltyIndex(text, ns=(n,)).ngram_overlap(sample, n)


def longest_copied_span(sample: str, text: str) -> str:
    return NoveltyIndex(text, ns=()).longest_copied_span(sample)


def word_overlap(sample: str, text: str) -> float | None:
    return NoveltyIndex(text, ns=()).word_overlap(sample)


def novelty(sample: str, text: str, ns=DEFAULT_NS) -> dict:
    return NoveltyIndex(text, ns).novelty(sample)

TEXT = "the quick brown fox jumps over the lazy dog while alice reads her book by the river"


def brute_longest(sample: str, text: str) -> str:
    """O(n^3): every substring, longest first, earliest first on ties."""
    for length in range(len(sample), 0, -1):
        for start in range(len(sample) - length + 1):
            if sample[start : start + length] in text:
                return sample[start : start + length]
    return ""


def brute_overlap(sample: str, text: str, n: int) -> float | None:
    grams = [sample[i : i + n] for i in range(len(sample) - n + 1)]
    return sum(g in text for g in grams) / len(grams) if grams else None


# --- n-gram overlap ---------------------------------------------------------------------------------

def test_a_sample_copied_whole_is_all_overlap():
    sample = TEXT[4:60]
    assert ngram_overlap(sample, TEXT, 10) == 1.0
    assert ngram_overlap(sample, TEXT, 20) == 1.0
    assert longest_copied_span(sample, TEXT) == sample


def test_characters_absent_from_the_text_give_zero():
    sample = "ZQX#ZQX#ZQX#ZQX#ZQX#ZQX#"
    assert ngram_overlap(sample, TEXT, 10) == 0.0
    assert ngram_overlap(sample, TEXT, 20) == 0.0
    assert longest_copied_span(sample, TEXT) == ""
    assert word_overlap(sample, TEXT) == 0.0  # "zqx" x 6: words, none of them the text's


def test_a_partial_copy_gives_the_exact_fraction():
    text = "abcdefghijklmnopqrst"
    sample = "abcdefghijkl" + "0123456789"  # 22 characters: 13 10-grams, those starting at 0, 1, 2 copied
    assert Fraction(ngram_overlap(sample, text, 10)).limit_denominator(100) == Fraction(3, 13)
    assert ngram_overlap(sample, text, 12) == pytest.approx(1 / 11)
    assert longest_copied_span(sample, text) == "abcdefghijkl"


def test_repeated_ngrams_count_each_time():
    # 11 10-grams; only the two at offsets 0 and 10 ("abcdefghij") occur in the text.
    assert ngram_overlap("abcdefghij" * 2, "abcdefghij", 10) == pytest.approx(2 / 11)


def test_a_sample_shorter_than_n_has_no_share():
    assert ngram_overlap("the quick", TEXT, 10) is None
    assert ngram_overlap("the quick ", TEXT, 10) == 1.0  # exactly n: one n-gram
    assert ngram_overlap("", TEXT, 1) is None


def test_ngram_overlap_matches_a_direct_count_on_random_strings():
    rng = random.Random(0)
    for _ in range(200):
        alphabet = rng.choice(["ab", "abc ", "xyz"])
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200)))
        sample = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        n = rng.choice([1, 3, 10, 20])
        expected = brute_overlap(sample, text, n)
        got = ngram_overlap(sample, text, n)
        assert got is None if expected is None else got == pytest.approx(expected)


def test_n_must_be_positive():
    with pytest.raises(ConfigError):
        ngram_overlap("abc", "abc", 0)
    with pytest.raises(ConfigError):
        NoveltyIndex("abc", ns=(0, 10))


# --- longest copied span ----------------------------------------------------------------------------

def test_longest_span_equals_brute_force_on_random_strings():
    rng = random.Random(1)
    for _ in range(300):
        # Small alphabets make long copies common, so the 4-, 7-, 10- and 20-gram filters all act.
        alphabet = rng.choice(["ab", "abc", "ab c.", "xyz"])
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        sample = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        assert longest_copied_span(sample, text) == brute_longest(sample, text), (sample, text)


def test_longest_span_finds_a_long_copy_inside_new_text():
    copied = TEXT[10:45]
    sample = "QQQQQ" + copied + "ZZZZ" + TEXT[0:12] + "#"
    assert longest_copied_span(sample, TEXT) == copied
    assert longest_copied_span("", TEXT) == ""
    assert longest_copied_span("abc", "") == ""


def test_ties_give_the_first_span():
    assert longest_copied_span("xyQQab", "ab xy") == "xy"


# --- words ------------------------------------------------------------------------------------------

def test_what_a_word_is():
    assert words("Don't 'stop' rock'n'roll, O\u2019Brien! snake_case 3d x2y") == [
        "don't", "stop", "rock'n'roll", "o'brien", "snake", "case", "d", "x", "y"
    ]
    assert words("Café naïve ÉCOLE") == ["café", "naïve", "école"]
    assert words("--- 123 ...") == []


def test_word_overlap_ignores_case_and_punctuation():
    text = "Don't stop. The cat's hat!"
    # don't, stop, the, hat are the text's words; dog's and cat (only "cat's" is) are not.
    assert word_overlap("DON'T 'stop' -- the dog's HAT, 42 cat", text) == pytest.approx(4 / 6)
    assert word_overlap("don\u2019t stop", text) == 1.0  # the typographic apostrophe reads as '
    assert word_overlap("... 42 !", text) is None


# --- the bundle and the index -----------------------------------------------------------------------

def test_novelty_bundles_every_measure():
    sample = "the lazy dog reads QQQ"
    result = novelty(sample, TEXT)
    assert result == {
        "ngram_10": ngram_overlap(sample, TEXT, 10),
        "ngram_20": ngram_overlap(sample, TEXT, 20),
        "longest_copied_span": "the lazy dog ",
        "longest_copied_length": 13,
        "word_overlap": pytest.approx(4 / 5),
    }


def test_one_index_scores_many_samples_as_the_functions_do():
    rng = random.Random(2)
    text = " ".join(rng.choice(TEXT.split()) for _ in range(400))
    index = NoveltyIndex(text)
    for _ in range(20):
        start = rng.randrange(len(text) - 50)
        sample = text[start : start + rng.randint(0, 50)] + rng.choice(["", " zebra", "!!"]) + TEXT[:15]
        assert index.novelty(sample) == novelty(sample, text)
        assert index.longest_copied_span(sample) == brute_longest(sample, text)


# --- items: training list, held out, new ------------------------------------------------------------

LIST = ListItems(train={"rex", "raptor", "bronto"}, held_out={"stego"}, labels=(), decided={})


def item(text: str, label: str | None = None, complete: bool = True) -> Item:
    return Item(text, label, None, -1.0, complete)


def test_items_sort_into_training_held_out_and_new_with_shares_adding_up_to_one():
    draw = [item("rex"), item("rex"), item("stego"), item("rexx"), item("stegosaurus", complete=False)]
    figures = item_novelty(LIST, ItemDraw(draw, drawn=5, new=2))
    assert figures == {"items": 5, "counts": {"train": 2, "held_out": 1, "new": 2},
                       "shares": {"train": 0.4, "held_out": 0.2, "new": 0.4}, "cut": 1}
    assert sum(figures["shares"].values()) == pytest.approx(1.0)
    assert item_novelty(LIST, draw) == figures  # a list of items as well as a draw
    assert list(figures["counts"]) == list(ITEM_GROUPS)  # makemore's order


def test_no_items_have_no_shares():
    figures = item_novelty(LIST, [])
    assert figures["counts"] == {"train": 0, "held_out": 0, "new": 0}
    assert set(figures["shares"].values()) == {None}


def test_a_label_is_kept_where_the_list_gives_the_item_one_label():
    labelled = ListItems(train={"rex", "raptor", "bronto"}, held_out={"stego"}, labels=("big", "small"),
                         decided={"rex": "big", "bronto": "big", "stego": "small"})  # raptor has both
    draw = [item("rex", "big"), item("stego", "big"), item("raptor", "big"), item("new", "big"),
            item("stego", "small"), item("bronto", "small")]
    figures = item_novelty(labelled, draw)
    # Decided: rex, stego, stego, bronto; kept: rex (big) and stego (small).
    assert (figures["decided"], figures["label_match"], figures["label_match_share"]) == (4, 2, 0.5)
    big, small = figures["labels"]["big"], figures["labels"]["small"]
    assert big["counts"] == {"train": 2, "held_out": 1, "new": 1}
    assert (big["decided"], big["label_match"]) == (2, 1)
    assert small["shares"] == {"train": 0.5, "held_out": 0.5, "new": 0.0}
    assert (small["decided"], small["label_match_share"]) == (2, 0.5)
    assert item_novelty(labelled, [item("raptor", "big")])["label_match_share"] is None  # undecided
