"""The selectable-gate LSTM: nn.LSTM's twin with sigmoid gates, Keras 2.0's with hard_sigmoid."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from charlstm.config.model import ModelConfig
from charlstm.model.lstm import ActivationLSTM, hard_sigmoid
from charlstm.model.network import CharLSTM


def test_hard_sigmoid_is_kerass_clip():
    x = torch.tensor([-10.0, -2.5, -1.0, 0.0, 1.0, 2.5, 10.0])
    assert hard_sigmoid(x).tolist() == pytest.approx([0.0, 0.0, 0.3, 0.5, 0.7, 1.0, 1.0])


@pytest.mark.parametrize("layers", [1, 2])
def test_with_sigmoid_gates_it_equals_the_fused_lstm(layers):
    torch.manual_seed(0)
    fused = torch.nn.LSTM(5, 7, num_layers=layers, batch_first=True)
    mine = ActivationLSTM(5, 7, num_layers=layers, gate_activation="sigmoid")
    mine.load_state_dict(fused.state_dict())  # same parameter names and shapes
    x = torch.randn(3, 11, 5)
    state = (torch.randn(layers, 3, 7), torch.randn(layers, 3, 7))
    expected_out, (expected_h, expected_c) = fused(x, state)
    out, (h, c) = mine(x, state)
    torch.testing.assert_close(out, expected_out, atol=1e-6, rtol=0)
    torch.testing.assert_close(h, expected_h, atol=1e-6, rtol=0)
    torch.testing.assert_close(c, expected_c, atol=1e-6, rtol=0)


def test_hard_sigmoid_gates_change_the_output_and_keep_the_contract():
    config = ModelConfig(vocab_size=9, hidden_size=8, num_layers=2, embedding_size=4)
    soft, hard = CharLSTM(config), CharLSTM(replace(config, gate_activation="hard_sigmoid"))
    hard.load_state_dict(soft.state_dict())
    soft.eval()
    hard.eval()
    ids = torch.randint(0, 9, (2, 6))
    hard_logits, hard_state = hard(ids)
    soft_logits, _ = soft(ids)
    assert hard_logits.shape == soft_logits.shape == (2, 6, 9)
    assert not torch.allclose(hard_logits, soft_logits)
    # State carried over two calls equals one call, as for every cell.
    first, state = hard(ids[:, :3])
    second, _ = hard(ids[:, 3:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), hard_logits, atol=1e-6, rtol=0)
    assert [s.shape for s in hard_state] == [(2, 2, 8), (2, 2, 8)]


def test_gradients_flow_through_the_unfused_lstm():
    model = CharLSTM(ModelConfig(vocab_size=5, hidden_size=4, num_layers=1, gate_activation="hard_sigmoid"))
    logits, _ = model(torch.randint(0, 5, (2, 4)))
    logits.sum().backward()
    assert model.rnn.weight_hh_l0.grad is not None and model.rnn.weight_hh_l0.grad.abs().sum() > 0
