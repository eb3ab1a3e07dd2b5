"""model.py: the forward contract, carried state, Keras initialisation, loss, config checks."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from charlstm.config.choices import InputEncoding
from charlstm.config.model import ModelConfig
from charlstm.errors import ConfigError
from charlstm.model.loss import char_loss
from charlstm.model.network import CELLS, CharLSTM, detach_state, prime, prime_many
from charlstm.presets import PRESETS

V = 11
TINY = ModelConfig(vocab_size=V, embedding_size=6, hidden_size=16, num_layers=2, dropout=0.1)


def _model(seed: int = 0, **changes) -> CharLSTM:
    torch.manual_seed(seed)
    return CharLSTM(replace(TINY, **changes))


def _ids(batch: int, steps: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (batch, steps), generator=torch.Generator().manual_seed(seed))


def keras_lstm_params(input_size: int, units: int) -> int:
    """Keras's count for one LSTM layer: four gates, each kernel + recurrent kernel + bias."""
    return 4 * ((input_size + units) * units + units)


# --- the forward contract ------------------------------------------------------------------------


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("encoding", list(InputEncoding))
def test_forward_shapes(cell, encoding):
    model = _model(cell=cell, input_encoding=encoding)
    logits, state = model(_ids(3, 5))
    assert logits.shape == (3, 5, V)
    assert logits.dtype == torch.float32
    assert len(state) == (2 if cell == "lstm" else 1)
    for part in state:
        assert part.shape == (TINY.num_layers, 3, TINY.hidden_size)


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("encoding", list(InputEncoding))
def test_state_carried_across_two_calls_equals_one_long_call(cell, encoding):
    model = _model(cell=cell, input_encoding=encoding).eval()
    ids = _ids(2, 12)
    with torch.no_grad():
        whole, whole_state = model(ids)
        first, state = model(ids[:, :5])
        second, split_state = model(ids[:, 5:], detach_state(state))
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole, atol=1e-6, rtol=0)
    for a, b in zip(split_state, whole_state, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    # The carried state matters: starting the second half from zeros gives other logits.
    with torch.no_grad():
        fresh, _ = model(ids[:, 5:])
    assert not torch.allclose(fresh, second, atol=1e-4)


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("chunk", [4096, 5])  # 5: several chunks, rows leaving the batch as their prompts end
def test_prompts_read_together_each_end_where_read_alone(cell, chunk):
    model = _model(cell=cell).eval()
    lengths = [7, 30, 1, 30, 12]  # unsorted, one tie, one of a single character
    prompts = [_ids(1, n, seed=n + k)[0] for k, n in enumerate(lengths)]
    logits, state = prime_many(model, prompts, chunk=chunk)
    assert logits.shape == (len(prompts), V) and all(s.shape == (2, len(prompts), 16) for s in state)
    for k, prompt in enumerate(prompts):  # in the order given, each its own prompt's end
        alone_logits, alone_state = prime(model, prompt[None, :])
        assert torch.allclose(logits[k], alone_logits[0], atol=1e-5)
        assert all(torch.allclose(a[:, k], b[:, 0], atol=1e-5)
                   for a, b in zip(state, alone_state, strict=True))


def test_one_prompt_read_together_is_prime_itself_and_an_own_cell_reads_each_alone():
    model = _model().eval()
    prompt = _ids(1, 9)[0]
    assert torch.equal(prime_many(model, [prompt])[0], prime(model, prompt[None, :])[0])
    hard = _model(gate_activation="hard_sigmoid").eval()  # ActivationLSTM takes no packed sequence
    prompts = [_ids(1, 4)[0], _ids(1, 9, seed=2)[0]]
    logits, _ = prime_many(hard, prompts)
    assert torch.equal(logits[1], prime(hard, prompts[1][None, :])[0][0])
    with pytest.raises(ValueError, match="at least one id"):
        prime_many(model, [prompt, prompt[:0]])


def test_logits_are_raw_scores_not_probabilities():
    logits, _ = _model().eval()(_ids(2, 4))
    assert not torch.allclose(logits.exp().sum(-1), torch.ones(2, 4))


@pytest.mark.parametrize("cell", list(CELLS))
def test_init_state_is_zeros_of_the_right_shape(cell):
    model = _model(cell=cell)
    state = model.init_state(4)
    assert len(state) == (2 if cell == "lstm" else 1)
    for part in state:
        assert part.shape == (TINY.num_layers, 4, TINY.hidden_size)
        assert part.dtype == model.head.weight.dtype
        assert part.device == model.head.weight.device
        assert not part.any()
    # An explicit zero state is what forward uses when given none.
    model.eval()
    ids = _ids(4, 3)
    torch.testing.assert_close(model(ids, state)[0], model(ids)[0])


def test_init_state_follows_the_weights_dtype():
    model = _model().double()
    assert all(part.dtype == torch.float64 for part in model.init_state(2))


def test_detach_state_cuts_the_graph():
    model = _model()
    _, state = model(_ids(2, 3))
    assert all(part.requires_grad for part in state)
    detached = detach_state(state)
    assert not any(part.requires_grad for part in detached)
    for a, b in zip(detached, state, strict=True):
        torch.testing.assert_close(a, b)


# --- Keras initialisation and parameter counts ---------------------------------------------------


@pytest.mark.parametrize(("preset", "layers"), [("tutorial", 1), ("tutorial-large", 2)])
def test_tutorial_networks_have_kerass_parameter_count(preset, layers):
    vocab_size = 47
    config = replace(PRESETS[preset].model, vocab_size=vocab_size)
    assert config.input_encoding == "scalar" and config.init == "keras"
    assert config.num_layers == layers and config.hidden_size == 256
    units = config.hidden_size
    expected = keras_lstm_params(1, units)  # scalar input: one feature per character
    expected += keras_lstm_params(units, units) * (layers - 1)  # later layers read the layer below
    expected += units * vocab_size + vocab_size  # Dense head
    model = CharLSTM(config)
    assert model.num_parameters() == expected
    # PyTorch's second bias vector exists but is frozen: it is the whole difference.
    assert model.num_parameters(trainable_only=False) == expected + layers * 4 * units


def _keras_model(cell: str = "lstm") -> CharLSTM:
    return _model(init="keras", cell=cell, input_encoding="one-hot")


def test_keras_init_forget_bias_is_one_and_bias_hh_is_frozen_zero():
    model = _keras_model()
    H = TINY.hidden_size
    for layer in range(TINY.num_layers):
        bias_ih = getattr(model.rnn, f"bias_ih_l{layer}")
        bias_hh = getattr(model.rnn, f"bias_hh_l{layer}")
        # Gate order in PyTorch: input, forget, cell, output.
        torch.testing.assert_close(bias_ih[H : 2 * H], torch.ones(H))
        assert not bias_ih[:H].any() and not bias_ih[2 * H :].any()
        assert bias_ih.requires_grad
        assert not bias_hh.any()
        assert not bias_hh.requires_grad
    assert not model.head.bias.any()


def test_frozen_bias_hh_stays_zero_after_training_steps():
    model = _keras_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    ids = _ids(4, 6)
    for _ in range(2):
        optimizer.zero_grad()
        logits, _ = model(ids[:, :-1])
        char_loss(logits, ids[:, 1:]).backward()
        optimizer.step()
    assert not model.rnn.bias_hh_l0.any()
    H = TINY.hidden_size
    assert not torch.equal(model.rnn.bias_ih_l0[H : 2 * H], torch.ones(H))  # the trained bias moved


@pytest.mark.parametrize("cell", list(CELLS))
def test_keras_init_respects_glorot_and_orthogonal(cell):
    model = _keras_model(cell)
    H = TINY.hidden_size
    for layer in range(TINY.num_layers):
        weight_ih = getattr(model.rnn, f"weight_ih_l{layer}")  # (gates*H, input)
        weight_hh = getattr(model.rnn, f"weight_hh_l{layer}")  # (gates*H, H)
        fan_out, fan_in = weight_ih.shape
        assert weight_ih.abs().max() <= math.sqrt(6 / (fan_in + fan_out))
        # Keras's orthogonal (H, gates*H) kernel transposed: orthonormal columns.
        torch.testing.assert_close(weight_hh.T @ weight_hh, torch.eye(H), atol=1e-5, rtol=0)
    limit = math.sqrt(6 / (H + V))
    assert model.head.weight.abs().max() <= limit
    # Uniform on [-limit, limit]: the largest draw lands near the edge, not far inside.
    assert model.head.weight.abs().max() > 0.8 * limit


def test_pytorch_init_is_not_keras_init():
    model = _model()
    assert model.rnn.bias_hh_l0.requires_grad
    assert model.rnn.bias_hh_l0.any()


# --- loss ----------------------------------------------------------------------------------------


def test_char_loss_equals_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, V)
    targets = torch.randint(0, V, (3, 5))
    expected = F.cross_entropy(logits.permute(0, 2, 1), targets)
    torch.testing.assert_close(char_loss(logits, targets), expected)


def test_char_loss_of_uniform_logits_is_log_v():
    loss = char_loss(torch.zeros(2, 4, V), torch.randint(0, V, (2, 4)))
    assert loss.item() == pytest.approx(math.log(V))


def test_char_loss_computes_in_float32_for_low_precision_logits():
    logits = torch.randn(2, 3, V)
    targets = torch.randint(0, V, (2, 3))
    loss = char_loss(logits.to(torch.bfloat16), targets)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, F.cross_entropy(logits.to(torch.bfloat16).float().reshape(-1, V),
                                                     targets.reshape(-1)))


# --- config checks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"cell": "transformer"},
        {"input_encoding": "bytes"},
        {"init": "xavier"},
        {"hidden_size": 0},
        {"num_layers": 0},
        {"embedding_size": 0},
        {"dropout": 1.0},
        {"dropout": -0.1},
    ],
)
def test_invalid_model_config_raises(changes):
    with pytest.raises(ConfigError):
        replace(TINY, **changes)


def test_model_needs_a_vocab_size():
    with pytest.raises(ConfigError, match="vocab_size"):
        CharLSTM(replace(TINY, vocab_size=0))


@pytest.mark.parametrize(("encoding", "size"), [("embedding", 6), ("one-hot", V), ("scalar", 1)])
def test_input_size_per_encoding(encoding, size):
    config = replace(TINY, input_encoding=encoding)
    assert config.input_size == size
    assert CharLSTM(config).rnn.input_size == size
