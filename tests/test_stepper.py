"""The fast single-step path equals the model's own forward, step after step."""

from __future__ import annotations

import pytest
import torch

from charlstm.config.model import ModelConfig
from charlstm.model.network import CharLSTM
from charlstm.model.stepper import LSTMStepper, supports_fast_steps


@pytest.mark.parametrize("encoding", ["embedding", "one-hot", "scalar"])
@pytest.mark.parametrize("layers", [1, 3])
def test_steps_match_the_forward_pass(encoding, layers):
    torch.manual_seed(layers)
    model = CharLSTM(ModelConfig(vocab_size=13, hidden_size=8, num_layers=layers, input_encoding=encoding,
                                 embedding_size=5, dropout=0.3)).eval()
    ids = torch.randint(0, 13, (3, 7))
    with torch.no_grad():
        expected, (h_ref, c_ref) = model(ids)
    state = tuple(s.clone() for s in model.init_state(3))
    stepper = LSTMStepper(model, state)
    for t in range(7):
        logits = stepper.step(ids[:, t])
        torch.testing.assert_close(logits, expected[:, t], atol=1e-5, rtol=0)
    torch.testing.assert_close(state[0], h_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(state[1], c_ref, atol=1e-5, rtol=0)


def test_only_sigmoid_lstms_take_the_fast_path():
    assert supports_fast_steps(CharLSTM(ModelConfig(vocab_size=5, hidden_size=4)))
    assert not supports_fast_steps(CharLSTM(ModelConfig(vocab_size=5, hidden_size=4, cell="gru")))
    assert not supports_fast_steps(
        CharLSTM(ModelConfig(vocab_size=5, hidden_size=4, gate_activation="hard_sigmoid")))


@pytest.mark.parametrize("layers", [1, 2])
def test_a_stepper_never_changes_the_models_weights_even_with_one_hidden_unit(layers):
    """With hidden_size 1 a transposed (4, 1) weight is already contiguous: the stepper must copy it."""
    torch.manual_seed(0)
    model = CharLSTM(ModelConfig(vocab_size=6, hidden_size=1, num_layers=layers, embedding_size=3,
                                 dropout=0.0)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.tensor([[1, 4, 2, 5]])
    with torch.no_grad():
        expected, _ = model(ids)
    for _ in range(3):  # each new stepper used to double the g rows of the recurrent weights again
        stepper = LSTMStepper(model, tuple(s.clone() for s in model.init_state(1)))
        with torch.no_grad():  # as generation runs it
            steps = [stepper.step(ids[:, t]).clone() for t in range(ids.shape[1])]
        for t, logits in enumerate(steps):
            torch.testing.assert_close(logits, expected[:, t], atol=1e-6, rtol=0)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_the_first_rows_of_a_pool_step_as_a_stepper_of_their_own():
    torch.manual_seed(0)
    model = CharLSTM(ModelConfig(vocab_size=11, hidden_size=12, num_layers=2, embedding_size=5)).eval()
    pool_state = tuple(torch.randn(2, 6, 12) for _ in range(2))  # 6 rows, the first 3 live
    own_state = tuple(s[:, :3].clone() for s in pool_state)
    idle_rows = tuple(s[:, 3:].clone() for s in pool_state)
    pool, own = LSTMStepper(model, pool_state).first_rows(3), LSTMStepper(model, own_state)
    for ids in ([1, 2, 3], [4, 0, 10], [7, 7, 7]):
        batch = torch.tensor(ids)
        torch.testing.assert_close(pool.step(batch), own.step(batch))
    torch.testing.assert_close(pool_state[0][:, :3], own_state[0])
    torch.testing.assert_close(pool_state[1][:, :3], own_state[1])
    for state, idle in zip(pool_state, idle_rows, strict=True):  # the rows past the first 3 are never stepped
        assert torch.equal(state[:, 3:], idle)
