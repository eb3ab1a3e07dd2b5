"""framing/: stream and window framing each own their batches, loss, evaluation, reading and prompts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _runs import tiny_model
from charlstm.config.choices import FramingName
from charlstm.config.train import TrainConfig
from charlstm.data.vocab import Vocab
from charlstm.errors import CorpusError
from charlstm.framing import FRAMINGS, StreamFraming, WindowFraming, framing_for
from charlstm.model.loss import char_loss

V = 11
IDS = np.random.default_rng(0).integers(0, V, 600)
FRAMING_OBJECTS = [StreamFraming(8), WindowFraming(8)]


def test_every_framing_name_has_its_object():
    assert set(FRAMINGS) == set(FramingName)
    for name in FramingName:
        framing = framing_for(TrainConfig(framing=name, seq_len=9))
        assert framing.name == name and framing.seq_len == 9


@pytest.mark.parametrize("framing", FRAMING_OBJECTS, ids=str)
def test_batches_share_one_iterate_signature_and_resume_mid_epoch(framing):
    batches = framing.batches(IDS, 4, seed=3, shuffle=True)
    for epoch in (0, 1):
        whole = list(batches.iterate(epoch))
        assert [k for k, _, _ in whole] == list(range(len(batches)))
        tail = list(batches.iterate(epoch, start=2))
        assert [k for k, _, _ in tail] == list(range(2, len(batches)))
        for (_, x, y), (_, x2, y2) in zip(whole[2:], tail, strict=True):
            assert torch.equal(x, x2) and torch.equal(y, y2)
    assert isinstance(batches.describe(), str) and batches.describe()


def test_stream_loss_scores_every_position_and_carries_the_state():
    model = tiny_model(V, num_layers=1)
    framing = StreamFraming(8)
    x, y = torch.from_numpy(IDS[:16]).view(1, 16), torch.from_numpy(IDS[1:17]).view(1, 16)
    with torch.no_grad():
        first, state = framing.loss(model, x[:, :8], y[:, :8], None)
        second, _ = framing.loss(model, x[:, 8:], y[:, 8:], state)
        whole = char_loss(model(x)[0], y)
    assert not any(s.requires_grad for s in state)  # detached: truncated BPTT
    torch.testing.assert_close((first + second) / 2, whole, atol=1e-6, rtol=0)


def test_window_loss_scores_the_character_after_each_window_only():
    model = tiny_model(V, num_layers=1)
    x, y = torch.from_numpy(IDS[:24]).view(3, 8), torch.from_numpy(IDS[24:27])
    with torch.no_grad():
        loss, state = WindowFraming(8).loss(model, x, y, None)
        expected = char_loss(model(x)[0][:, -1], y)
    assert state is None
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("framing", FRAMING_OBJECTS, ids=str)
def test_the_reader_scores_the_next_character_as_the_framing_reads(framing):
    model = tiny_model(V, scale=3.0)
    prompt = torch.from_numpy(IDS[:5])
    more = torch.from_numpy(IDS[5:12])
    with torch.no_grad():
        reader = framing.reader(model, prompt, rows=2)
        for t in range(len(more)):
            text = torch.cat([prompt, more[:t]])
            if isinstance(framing, WindowFraming):
                text = text[-framing.seq_len:]  # a window model sees its last window only
            expected = model(text[None, :])[0][0, -1]
            for row in range(2):
                torch.testing.assert_close(reader.logits[row].float(), expected, atol=1e-5, rtol=0)
            reader.advance(more[t].repeat(2))


def test_default_prompts():
    vocab = Vocab(list("\nabc"))
    rng = np.random.default_rng(0)
    train_ids = np.array([1, 2, 3, 1, 2, 3, 1, 2, 3, 1], dtype=np.uint8)
    assert StreamFraming(4).default_prompt(vocab, lambda: None, rng) == "\n"  # a paragraph start
    window = WindowFraming(4).default_prompt(vocab, lambda: train_ids, rng)
    assert len(window) == 4 and window in vocab.decode(train_ids)
    no_newline = Vocab(list("abc"))
    assert len(StreamFraming(3).default_prompt(no_newline, lambda: train_ids - 1, rng)) == 3
    with pytest.raises(CorpusError, match="no prompt given") as info:
        WindowFraming(4).default_prompt(vocab, lambda: None, rng)
    assert info.value.hint == "--prompt"
    assert WindowFraming.announces_default_prompt and not StreamFraming.announces_default_prompt


def test_sample_prompts_fit_each_framing():
    assert StreamFraming(128).sample_prompt_length < 128  # any start will do for a stream model
    assert WindowFraming(100).sample_prompt_length == 100  # a window model needs a whole window
