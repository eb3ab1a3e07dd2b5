"""The AWD-LSTM dropouts: training-only, the fused kernel's arithmetic, masks of the right shape."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from charlstm.config.model import ModelConfig
from charlstm.errors import ConfigError
from charlstm.model.network import CharLSTM
from charlstm.model.regularize import embedding_dropout, locked_dropout, lstm_layers

ALL = {"weight_drop": 0.3, "locked_dropout": True, "input_dropout": 0.2, "embedding_dropout": 0.1}


def _model(**changes) -> CharLSTM:
    torch.manual_seed(0)
    return CharLSTM(ModelConfig(vocab_size=12, hidden_size=16, num_layers=2, embedding_size=8,
                                dropout=0.25, **changes))


def test_layer_by_layer_without_dropout_equals_nn_lstm():
    torch.manual_seed(0)
    rnn = nn.LSTM(5, 7, num_layers=3, batch_first=True)
    x, state = torch.randn(2, 9, 5), (torch.randn(3, 2, 7), torch.randn(3, 2, 7))
    want, (h, c) = rnn(x, state)
    got, (h2, c2) = lstm_layers(rnn, x, state, weight_drop=0.0, between=0.0, locked=False)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(h2, h)
    torch.testing.assert_close(c2, c)


def test_regularisers_change_training_only():
    plain, regular = _model(), _model(**ALL)
    regular.load_state_dict(plain.state_dict())
    ids = torch.randint(0, 12, (3, 10))
    plain.eval(), regular.eval()
    torch.testing.assert_close(regular(ids)[0], plain(ids)[0])
    regular.train()
    assert not torch.allclose(regular(ids)[0], plain(ids)[0])


def test_weight_drop_trains_the_recurrent_weights_and_keeps_the_parameter_count():
    model = _model(weight_drop=0.5)
    assert model.num_parameters() == _model().num_parameters()
    logits, _ = model(torch.randint(0, 12, (2, 6)))
    logits.sum().backward()
    grad = model.rnn.weight_hh_l0.grad
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_weight_drop_mask_is_one_per_forward_pass():
    """A dropped recurrent weight is dropped at every step: only its gradient's mask shows it."""
    torch.manual_seed(1)
    rnn = nn.LSTM(3, 4, batch_first=True)
    x, state = torch.randn(1, 20, 3), (torch.zeros(1, 1, 4), torch.zeros(1, 1, 4))
    out, _ = lstm_layers(rnn, x, state, weight_drop=0.5, between=0.0, locked=False)
    out.sum().backward()
    zero = rnn.weight_hh_l0.grad == 0  # a weight dropped for the pass gets no gradient from any step
    assert 0 < zero.sum() < zero.numel()


def test_locked_dropout_shares_one_mask_across_time():
    torch.manual_seed(0)
    out = locked_dropout(torch.ones(4, 30, 6), 0.5)
    assert torch.equal(out, out[:, :1].expand_as(out))  # every step the same as the first
    assert set(out.unique().tolist()) <= {0.0, 2.0} and (out == 0).any()


def test_embedding_dropout_drops_whole_characters():
    torch.manual_seed(0)
    emb = nn.Embedding(50, 4)
    ids = torch.arange(50).repeat(3, 1)  # (3, 50): every character three times
    out = embedding_dropout(emb, ids, 0.5)
    dropped = (out == 0).all(dim=-1)  # (3, 50)
    assert dropped.any() and not dropped.all()
    assert torch.equal(dropped[0], dropped[1])  # the same characters dropped everywhere in the batch
    torch.testing.assert_close(out[0, ~dropped[0]], emb.weight[~dropped[0]] * 2)


@pytest.mark.parametrize("changes", [
    {"weight_drop": 1.0}, {"input_dropout": -0.1}, {"weight_drop": 0.2, "cell": "gru"},
    {"locked_dropout": True, "gate_activation": "hard_sigmoid"},
    {"embedding_dropout": 0.1, "input_encoding": "one-hot"},
])
def test_bad_regulariser_settings_raise(changes):
    with pytest.raises(ConfigError):
        ModelConfig(vocab_size=5, **changes)


def test_without_dropout_turns_every_dropout_off():
    config = ModelConfig(vocab_size=5, dropout=0.3, **ALL).without_dropout()
    dropouts = (config.dropout, config.weight_drop, config.input_dropout, config.embedding_dropout)
    assert dropouts == (0, 0, 0, 0)
