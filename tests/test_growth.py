"""Growing a model's vocabulary keeps the old characters' predictions."""

from __future__ import annotations

import pytest
import torch

from charlstm.config.model import ModelConfig
from charlstm.errors import ConfigError
from charlstm.model.growth import grown_state
from charlstm.model.network import CharLSTM

OLD, ADDED = 11, 4


def _model(vocab_size: int, **fields) -> CharLSTM:
    config = ModelConfig(vocab_size=vocab_size, hidden_size=16, num_layers=2, embedding_size=8, dropout=0.0,
                         **fields)
    return CharLSTM(config).eval()


@pytest.mark.parametrize("fields", [
    {}, {"input_encoding": "one-hot"}, {"input_encoding": "scalar", "init": "keras"}, {"cell": "gru"}])
def test_grown_model_predicts_the_old_characters_as_before(fields):
    torch.manual_seed(0)
    old = _model(OLD, **fields)
    with torch.no_grad():  # weights large enough that the predictions are far from uniform
        for p in old.parameters():
            p.mul_(3)
    new = _model(OLD + ADDED, **fields)
    new.load_state_dict(grown_state(old, OLD + ADDED))
    ids = torch.randint(0, OLD, (3, 40))
    with torch.no_grad():
        before = old(ids)[0].log_softmax(-1)  # (B, T, V_old)
        after = new(ids)[0].log_softmax(-1)  # (B, T, V_new)
    assert torch.allclose(after[..., :OLD], before, atol=1e-5)
    assert after[..., OLD:].exp().max() < 1e-9  # the new characters start all but impossible
    # ... and learnable: a new character in the input changes what follows.
    with torch.no_grad():
        changed = new(torch.cat([ids[:, :5], torch.full((3, 1), OLD + 1)], 1))[0][:, -1]
    assert not torch.allclose(changed, after[:, 5], atol=1e-4) or fields.get("input_encoding") == "one-hot"


def test_grown_weights_learn_the_new_characters():
    torch.manual_seed(0)
    new = _model(OLD + ADDED)
    new.load_state_dict(grown_state(_model(OLD), OLD + ADDED))
    optimizer = torch.optim.Adam(new.parameters(), lr=1e-2)
    ids = torch.randint(0, OLD + ADDED, (4, 33))
    losses = []
    for _ in range(30):
        logits, _ = new(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0] - 2  # the new characters' rows learn from e^-30 at Adam's pace


def test_same_size_is_a_copy_and_shrinking_is_refused():
    old = _model(OLD)
    same = grown_state(old, OLD)
    assert all(torch.equal(same[k], v) for k, v in old.state_dict().items())
    with pytest.raises(ConfigError, match="only grow"):
        grown_state(old, OLD - 1)
