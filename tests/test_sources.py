"""data/sources.py and data/cleaning.py: reading, cleaning (Gutenberg, BOM, newlines, NFC, case), errors."""

from __future__ import annotations

import json
import os
import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from charlstm.config.corpus import CorpusConfig
from charlstm.data import sources as corpus
from charlstm.data.cleaning import TextCleaner
from charlstm.data.sources import load_text
from charlstm.data.vocab import Vocab
from charlstm.errors import ConfigError, CorpusError, UnknownCharactersError

RAW = CorpusConfig(normalize=False)  # Gutenberg stripping alone

BODY = "CHAPTER I.\n\nIt was a dark night, and Alice said \"oh!\"\n\nThe end of the chapter.\n"
PREAMBLE = (
    "The Project Gutenberg EBook of A Test Book, by Some One\n\n"
    "This eBook is for the use of anyone anywhere at no cost.\n\n"
    "Title: A Test Book\n\n"
)
LICENSE = "\n*** START: FULL LICENSE ***\n\nTHE FULL PROJECT GUTENBERG LICENSE\nLegal text here.\n"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def clean_document(text: str, config: CorpusConfig | None = None) -> str:
    """One whole document cleaned in one feed: what any split into chunks must give too."""
    cleaner = TextCleaner.for_corpus(config or CorpusConfig())
    return cleaner.feed(text) + cleaner.finish()


# --- Gutenberg header and footer -------------------------------------------------------------

HEADERS = {
    "this": "*** START OF THIS PROJECT GUTENBERG EBOOK A TEST BOOK ***\n\n\n",
    "the": "*** START OF THE PROJECT GUTENBERG EBOOK A TEST BOOK ***\n\n\n",
}
FOOTERS = {
    "this": "\n\n*** END OF THIS PROJECT GUTENBERG EBOOK A TEST BOOK ***\n" + LICENSE,
    "the": "\n\n*** END OF THE PROJECT GUTENBERG EBOOK A TEST BOOK ***\n" + LICENSE,
    # The older books put this line first, then the *** END line.
    "older": (
        "\n\nEnd of Project Gutenberg's A Test Book, by Some One\n\n"
        "*** END OF THIS PROJECT GUTENBERG EBOOK A TEST BOOK ***\n" + LICENSE
    ),
    "older-the": (
        "\n\nEnd of the Project Gutenberg EBook of A Test Book, by Some One\n\n"
        "*** END OF THIS PROJECT GUTENBERG EBOOK A TEST BOOK ***\n" + LICENSE
    ),
}


@pytest.mark.parametrize("header", sorted(HEADERS))
@pytest.mark.parametrize("footer", sorted(FOOTERS))
def test_gutenberg_header_and_footer_are_stripped(tmp_path, header, footer):
    path = _write(tmp_path, "book.txt", PREAMBLE + HEADERS[header] + BODY + FOOTERS[footer])
    assert load_text([path]) == BODY.strip("\n")


def test_crlf_gutenberg_file_is_stripped(tmp_path):
    raw = "\ufeff" + PREAMBLE + HEADERS["this"] + BODY + FOOTERS["older"]
    path = tmp_path / "book.txt"
    path.write_bytes(raw.replace("\n", "\r\n").encode("utf-8"))
    assert load_text([path]) == BODY.strip("\n")


def test_the_older_end_line_cuts_before_the_star_end_line():
    text = clean_document(HEADERS["this"] + BODY + FOOTERS["older"], RAW)
    assert "End of Project Gutenberg" not in text
    assert "*** END" not in text


def test_text_without_markers_is_unchanged(tiny_text):
    assert clean_document(tiny_text, RAW) == tiny_text
    # A mention inside a line is not a marker: markers must start their line.
    mention = "They spoke of the End of Project Gutenberg's era *** END OF THIS PROJECT GUTENBERG EBOOK.\n"
    assert clean_document(mention, RAW) == mention


def test_strip_option_off_keeps_header_and_footer(tmp_path):
    raw = PREAMBLE + HEADERS["the"] + BODY + FOOTERS["the"]
    path = _write(tmp_path, "book.txt", raw)
    assert load_text([path], CorpusConfig(strip_gutenberg=False)) == raw.strip("\n")


# --- other cleaning ----------------------------------------------------------------------------


def test_bom_dropped_and_crlf_and_cr_become_lf(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes("\ufeffone\r\ntwo\rthree\n\r\nfour".encode())
    text = load_text([path])
    assert text == "one\ntwo\nthree\n\nfour"
    assert "\r" not in text and "\ufeff" not in text


def test_bom_only_dropped_at_the_start():
    assert clean_document("\ufeffa\ufeffb") == "a\ufeffb"


def test_unicode_is_nfc_normalised():
    decomposed = "cafe\u0301 and Cafe\u0301"
    cleaned = clean_document(decomposed)
    assert cleaned == "caf\u00e9 and Caf\u00e9"
    assert "\u0301" not in Vocab.from_text(cleaned).chars


def test_blank_lines_around_the_body_are_trimmed():
    assert clean_document("\n\n\nbody\n\nmore\n\n\n") == "body\n\nmore"


def test_lowercase_option():
    text = "Hello \u00c9COLE, Alice!"
    assert clean_document(text) == text
    assert clean_document(text, CorpusConfig(lowercase=True)) == "hello \u00e9cole, alice!"


# --- reading files and directories -------------------------------------------------------------


def test_directory_is_read_in_sorted_order_joined_with_separator(tmp_path):
    folder = tmp_path / "books"
    folder.mkdir()
    _write(folder, "b.txt", "second book\n")
    _write(folder, "a.txt", "first book\n")
    _write(folder, "c.txt", "\n\n")  # empty after cleaning: skipped, no doubled separator
    _write(folder, "notes.md", "not a text file\n")
    assert load_text([folder]) == "first book" + corpus.SEPARATOR + "second book"


def test_files_are_read_in_the_order_given(tmp_path):
    a = _write(tmp_path, "a.txt", "alpha")
    b = _write(tmp_path, "b.txt", "beta")
    assert load_text([b, a]) == "beta" + corpus.SEPARATOR + "alpha"


def test_invalid_utf8_names_file_and_byte_offset(tmp_path):
    data = "caf\u00e9 ok ".encode() + b"\xff rest"
    path = tmp_path / "latin.txt"
    path.write_bytes(data)
    with pytest.raises(CorpusError) as info:
        load_text([path])
    message = str(info.value)
    offset = data.index(b"\xff")
    assert str(path) in message
    assert f"byte offset {offset}" in message
    assert "--encoding" in message


def test_latin1_encoding_reads_the_file(tmp_path):
    data = b"caf\xe9 \xff rest"
    path = tmp_path / "latin.txt"
    path.write_bytes(data)
    assert load_text([path], CorpusConfig(encoding="latin-1")) == data.decode("latin-1")


@pytest.mark.parametrize(
    ("encoding", "why"),
    [("no-such-codec", "unknown encoding"), ("undefined", "cannot decode text"),
     *((codec, "not a text encoding") for codec in ("rot13", "base64", "hex", "zlib", "bz2", "uu"))],
)
def test_an_encoding_that_cannot_read_text_is_a_setting_error(encoding, why):
    # Python's codec registry holds bytes-to-bytes and str-to-str codecs too: no text comes of them.
    with pytest.raises(ConfigError, match=why) as info:
        CorpusConfig(encoding=encoding)
    assert repr(encoding) in str(info.value)


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1", "cp1252", "utf-16", "punycode", "idna"])
def test_text_encodings_are_accepted(encoding):
    assert CorpusConfig(encoding=encoding).encoding == encoding


@pytest.mark.parametrize("data", [b"the cat-sat on the mat\n", b"abc-9999999"])
def test_a_codec_that_fails_without_an_offset_is_a_corpus_error_naming_the_file(tmp_path, data):
    path = tmp_path / "t.txt"
    path.write_bytes(data)  # punycode raises a bare UnicodeError, not a UnicodeDecodeError, on these
    with pytest.raises(CorpusError, match="not valid punycode") as info:
        load_text([path], CorpusConfig(encoding="punycode"))
    assert str(path) in str(info.value)


def test_binary_file_is_refused(tmp_path):
    path = tmp_path / "blob.txt"
    path.write_bytes(b"PK\x03\x04\x00\x00binary\x00data")
    with pytest.raises(CorpusError, match="binary") as info:
        load_text([path])
    assert str(path) in str(info.value)


def test_utf16_file_with_nul_bytes_reads_when_asked(tmp_path):
    path = tmp_path / "wide.txt"
    path.write_bytes("h\u00e9llo wide".encode("utf-16"))
    assert load_text([path], CorpusConfig(encoding="utf-16")) == "h\u00e9llo wide"


@pytest.mark.parametrize(("encoding", "codec"), [("utf-32", "utf-32"), ("utf16", "utf-16")])
def test_other_wide_encodings_read_when_asked(tmp_path, encoding, codec):
    path = tmp_path / "wide.txt"
    path.write_bytes("wide text".encode(codec))
    assert load_text([path], CorpusConfig(encoding=encoding)) == "wide text"


def test_missing_file_is_a_corpus_error(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(CorpusError, match="no such file") as info:
        load_text([missing])
    assert str(missing) in str(info.value)


@pytest.mark.parametrize("device", ["/dev/null", "/dev/zero"])
def test_a_device_is_named_for_what_it_is(device):
    if not Path(device).exists():
        pytest.skip(f"no {device} here")
    with pytest.raises(CorpusError, match=f"{device}: is a character device, not a regular file"):
        load_text([device])


def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    with unblocking(fifo):
        with pytest.raises(CorpusError, match=r"pipe\.txt: is a named pipe \(FIFO\), not a regular file"):
            load_text([fifo])
        with pytest.raises(CorpusError, match="named pipe"):  # the reader itself, called directly
            list(corpus.iter_decoded(fifo))


@contextmanager
def unblocking(fifo: Path, after: float = 10.0) -> Iterator[None]:
    """Should the code under test open ``fifo`` (and wait for a writer), open it as one after
    ``after`` seconds: the test then fails on its assertions instead of hanging the suite."""
    done = threading.Event()

    def release() -> None:
        if not done.wait(after):
            os.close(os.open(fifo, os.O_RDWR))  # O_RDWR never blocks on Linux, and counts as a writer

    watchdog = threading.Thread(target=release, daemon=True)
    watchdog.start()
    try:
        yield
    finally:
        done.set()
        watchdog.join()


def test_directory_without_txt_files_is_a_corpus_error(tmp_path):
    (tmp_path / "readme.md").write_text("x", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"no \.txt files"):
        load_text([tmp_path])


def test_no_paths_is_a_corpus_error():
    with pytest.raises(CorpusError):
        load_text([])


def test_empty_after_cleaning_is_a_corpus_error(tmp_path):
    only_markers = _write(tmp_path, "b.txt", PREAMBLE + HEADERS["the"] + "\n\n" + FOOTERS["the"])
    blank = _write(tmp_path, "a.txt", "\ufeff\r\n\r\n")
    with pytest.raises(CorpusError, match="empty"):
        load_text([only_markers, blank])


# --- the bundled corpus --------------------------------------------------------------------------


def test_default_corpus_loads_with_header_and_footer_stripped():
    path = corpus.default_corpus_path()
    text = load_text([path], CorpusConfig(lowercase=True))

    # Derive the expected body independently: the lines between the START line and
    # the first footer line of the raw file.
    lines = path.read_bytes().decode("utf-8").removeprefix("\ufeff").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("*** START OF"))
    end = next(
        i for i, line in enumerate(lines)
        if i > start and (line.startswith("End of Project Gutenberg") or line.startswith("*** END OF"))
    )
    expected = unicodedata.normalize("NFC", "\n".join(lines[start + 1 : end])).strip("\n").lower()
    assert text == expected
    assert text.startswith("alice's adventures in wonderland")
    assert text.rstrip().endswith("the end")
    assert "gutenberg" not in text

    vocab = Vocab.from_text(text)
    assert not {"\r", "\ufeff"} & set(vocab.chars)
    assert all(c == c.lower() for c in vocab.chars)


# --- Vocab ----------------------------------------------------------------------------------------


def test_vocab_is_sorted_and_distinct(tiny_text):
    vocab = Vocab.from_text(tiny_text)
    assert vocab.chars == sorted(set(tiny_text))
    assert len(vocab) == len(set(tiny_text))


def test_encode_decode_round_trip(tiny_text):
    vocab = Vocab.from_text(tiny_text)
    ids = vocab.encode(tiny_text)
    assert ids.dtype == np.int64
    assert ids.shape == (len(tiny_text),)
    assert ids.min() >= 0 and ids.max() < len(vocab)
    assert [vocab.chars[i] for i in ids[:20]] == list(tiny_text[:20])
    assert vocab.decode(ids) == tiny_text


def test_vocab_serialises_to_a_plain_list(tiny_text):
    vocab = Vocab.from_text(tiny_text)
    as_list = vocab.to_list()
    assert as_list == vocab.chars and as_list is not vocab.chars
    assert Vocab(as_list) == vocab
    assert Vocab(json.loads(json.dumps(as_list))) == vocab
    assert Vocab(list(reversed(as_list))) != vocab  # order is part of the vocabulary


@pytest.mark.parametrize("chars", [["a", "b", "a"], ["a", "bc"], ["a", ""]])
def test_vocab_rejects_duplicates_and_multi_character_entries(chars):
    with pytest.raises(CorpusError):
        Vocab(chars)


def test_unknown_characters_error_lists_them():
    vocab = Vocab.from_text("abc ")
    with pytest.raises(UnknownCharactersError) as info:
        vocab.encode("a zebra? yes")
    assert info.value.unknown == ["?", "e", "r", "s", "y", "z"]
    assert isinstance(info.value, CorpusError)
    for char in info.value.unknown:
        assert repr(char) in str(info.value)


def test_unknown_characters_drop():
    vocab = Vocab.from_text("abc")
    assert vocab.decode(vocab.encode("axbyc", unknown="drop")) == "abc"


def test_unknown_characters_replace():
    vocab = Vocab.from_text("abc ")
    assert vocab.decode(vocab.encode("axb yc", unknown="replace", replacement=" ")) == "a b  c"


def test_replacement_must_be_in_the_vocabulary():
    vocab = Vocab.from_text("abc")
    with pytest.raises(CorpusError, match="replacement '\\?' is not in the vocabulary"):
        vocab.encode("axc", unknown="replace", replacement="?")


def test_replace_without_a_replacement_says_one_is_needed():
    with pytest.raises(ConfigError, match="needs the replacement character"):
        Vocab.from_text("abc").encode("axc", unknown="replace")


def test_unknown_policy_must_be_known():
    vocab = Vocab.from_text("abc")
    with pytest.raises(ConfigError, match="policy"):
        vocab.encode("axc", unknown="ignore")


def test_iter_clean_streams_instead_of_reading_whole_files(tmp_path, monkeypatch):
    from charlstm.data import cleaning
    from charlstm.data import sources as corpus

    monkeypatch.setattr(corpus, "CHUNK_BYTES", 4096)
    path = tmp_path / "big.txt"
    path.write_text("a line of text\n" * 200_000, encoding="utf-8")  # 3 MB
    read: list[int] = []
    pieces = corpus.iter_clean([path], on_bytes=read.append)
    next(pieces)
    # Only the header window (for a Gutenberg START line) and one piece were read, not the file.
    assert sum(read) <= cleaning.HEADER_WINDOW + 2 * 4096 < path.stat().st_size
    rest = "".join(pieces)
    assert sum(read) == path.stat().st_size and rest


# --- hostile text ---------------------------------------------------------------------------------

WIDE_TEXT = "H\u00e9llo, wide world.\nA second line.\n" * 40


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_read_as_utf8_is_named_with_the_encoding_to_pass(tmp_path, codec):
    path = tmp_path / "wide.txt"
    path.write_bytes(WIDE_TEXT.encode(codec))  # "utf-16" writes a BOM, -le and -be none
    with pytest.raises(CorpusError, match="looks like UTF-16") as info:
        load_text([path])
    assert str(path) in str(info.value)
    assert info.value.hint == "--encoding utf-16"


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_encoding_utf16_reads_a_file_without_byte_order_mark(tmp_path, codec):
    path = tmp_path / "wide.txt"
    path.write_bytes(WIDE_TEXT.encode(codec))
    assert load_text([path], CorpusConfig(encoding="utf-16")) == WIDE_TEXT.strip("\n")


def test_encoding_utf16_on_text_that_is_not_utf16_is_a_corpus_error(tmp_path):
    path = _write(tmp_path, "narrow.txt", "plain UTF-8 text, no NUL bytes\n")
    with pytest.raises(CorpusError, match="byte-order mark") as info:
        load_text([path], CorpusConfig(encoding="utf-16"))
    assert str(path) in str(info.value)


@pytest.mark.parametrize("chunk_bytes", [None, 4096])
def test_a_nul_byte_anywhere_is_refused_with_its_offset(tmp_path, monkeypatch, chunk_bytes):
    if chunk_bytes:  # the NUL in a later piece than the first, as well as past the first 64 KB of one
        monkeypatch.setattr(corpus, "CHUNK_BYTES", chunk_bytes)
    data = b"a line of plain text\n" * 10_000 + b"x\x00y\n"
    path = tmp_path / "late.txt"
    path.write_bytes(data)
    with pytest.raises(CorpusError, match="binary") as info:
        load_text([path])
    assert str(path) in str(info.value)
    assert f"byte offset {data.index(0)}" in str(info.value)


def test_a_nul_character_in_utf16_text_is_refused(tmp_path):
    path = tmp_path / "wide.txt"
    path.write_bytes(("wide text " * 10 + "\x00 more").encode("utf-16"))
    with pytest.raises(CorpusError, match="NUL") as info:
        load_text([path], CorpusConfig(encoding="utf-16"))
    assert str(path) in str(info.value)


def test_a_corpus_of_only_whitespace_is_refused(tmp_path):
    spaces = _write(tmp_path, "a.txt", "   \n\n \t \n   ")
    newlines = _write(tmp_path, "b.txt", "\n\n\n")
    with pytest.raises(CorpusError, match="only whitespace"):
        load_text([spaces, newlines])


def test_a_whitespace_only_file_among_others_is_warned_about(tmp_path, caplog):
    good = _write(tmp_path, "a.txt", "real text\n")
    blank = _write(tmp_path, "b.txt", "   \n \t \n   ")
    with caplog.at_level("WARNING", logger="charlstm.data.sources"):
        assert load_text([good, blank]) == "real text" + corpus.SEPARATOR + "   \n \t \n   "
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert str(blank) in caplog.text and "nothing but whitespace" in caplog.text


def test_an_unreadable_file_in_a_folder_is_a_corpus_error(tmp_path, monkeypatch):
    from _runs import make_unreadable

    folder = tmp_path / "books"
    folder.mkdir()
    _write(folder, "a.txt", "readable\n")
    locked = _write(folder, "b.txt", "locked away\n")
    make_unreadable(locked, monkeypatch)
    with pytest.raises(CorpusError, match="cannot read") as info:
        load_text([folder])
    assert str(locked) in str(info.value)


def test_a_single_long_line_streams_in_bounded_pieces(tmp_path, monkeypatch):
    from charlstm.data import cleaning

    monkeypatch.setattr(corpus, "CHUNK_BYTES", 4096)
    path = tmp_path / "one-line.txt"
    line = "word " * 600_000  # 3 MB and no newline: the cleaner used to hold it whole
    path.write_text(line, encoding="utf-8")
    read: list[int] = []
    pieces = corpus.iter_clean([path], on_bytes=read.append)
    bound = cleaning.HEADER_WINDOW + 2 * 4096
    first = next(pieces)
    assert sum(read) <= bound < path.stat().st_size
    rest = list(pieces)
    assert max(read) <= 4096
    assert max(len(p) for p in [first, *rest]) <= bound
    assert first + "".join(rest) == line.rstrip("\n")


LONG_LINES = (
    "\ufeffpreamble\r\n*** START OF THE PROJECT GUTENBERG EBOOK T ***\r\n\r\n"
    + "cafe\u0301 " * 300 + "\r\n" + "x" * 700 + "\r" + "y" * 50 + "\n\n"
    + "End of Project Gutenberg's T, a title as long as a line can be " + "z" * 400 + "\n"
    + "licence\n"
)


@pytest.mark.parametrize("text", [LONG_LINES, LONG_LINES.replace("End of", "Mid of"), "x" * 5000])
@pytest.mark.parametrize("chunk", [1, 3, 64, 4096])
def test_feeding_long_lines_in_pieces_equals_cleaning_whole(monkeypatch, text, chunk):
    from charlstm.data import cleaning

    # Small limits, so the pieces cross the header window and the held-back partial line.
    monkeypatch.setattr(cleaning, "HEADER_WINDOW", 200)
    monkeypatch.setattr(cleaning, "LINE_HOLD", 100)
    for config in (CorpusConfig(), CorpusConfig(normalize=False), CorpusConfig(strip_gutenberg=False)):
        cleaner = cleaning.TextCleaner.for_corpus(config)
        pieces = [cleaner.feed(text[i : i + chunk]) for i in range(0, len(text), chunk)]
        assert "".join(pieces) + cleaner.finish() == clean_document(text, config)
