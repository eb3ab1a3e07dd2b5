"""Dynamic evaluation: it adapts to repeated text, scores each segment before learning it, changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from charlstm.analysis.dynamic import DynamicConfig, dynamic_evaluate, score_segments
from charlstm.config.model import ModelConfig
from charlstm.errors import ConfigError
from charlstm.model.network import CharLSTM


def _model(**changes) -> CharLSTM:
    torch.manual_seed(0)
    return CharLSTM(ModelConfig(vocab_size=10, hidden_size=32, num_layers=2, embedding_size=8,
                                dropout=0.3, **changes))


def _repeating(length: int = 60, times: int = 8) -> np.ndarray:
    return np.tile(np.random.default_rng(0).integers(0, 10, length), times)


def test_dynamic_score_of_repeating_text_is_clearly_below_static():
    result = dynamic_evaluate(_model(), _repeating(times=12), DynamicConfig(lr=1e-2, seq_len=20))
    assert result.static.characters == result.dynamic.characters == 719
    assert result.dynamic.loss < result.static.loss - 0.3


def test_static_equals_the_stream_read_in_one_piece():
    model, ids = _model(), _repeating(times=2)
    result = dynamic_evaluate(model, ids, DynamicConfig(seq_len=7))
    model.eval()
    with torch.no_grad():
        logits, _ = model(torch.from_numpy(ids[:-1]).long().unsqueeze(0))
        whole = torch.nn.functional.cross_entropy(logits[0], torch.from_numpy(ids[1:]).long())
    assert result.static.loss == pytest.approx(float(whole), rel=1e-5)


def test_a_segment_is_scored_before_the_model_learns_it():
    config = DynamicConfig(lr=1e-2, seq_len=20)
    ids = _repeating()
    adapting = score_segments(_model().train(), ids, config, adapt=True, device=torch.device("cpu"))
    frozen = score_segments(_model().train(), ids, config, adapt=False, device=torch.device("cpu"))
    assert adapting[0] == pytest.approx(frozen[0], abs=1e-6)  # nothing learnt before the first score
    assert sum(adapting[1:]) < sum(frozen[1:])


def test_no_segment_depends_on_the_text_after_it():
    config = DynamicConfig(lr=1e-2, seq_len=20)
    ids = _repeating()
    changed = ids.copy()
    changed[201:] = (changed[201:] + 3) % 10  # segment 10 (targets 201-220) on is different
    a = score_segments(_model().train(), ids, config, adapt=True, device=torch.device("cpu"))
    b = score_segments(_model().train(), changed, config, adapt=True, device=torch.device("cpu"))
    assert a[:10] == b[:10]
    assert a[10] != b[10]


def test_the_callers_model_is_left_unchanged():
    model = _model(weight_drop=0.2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dynamic_evaluate(model, _repeating(), DynamicConfig(lr=1e-2, seq_len=20))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training


@pytest.mark.parametrize("changes", [{"lr": 0}, {"seq_len": 0}, {"decay": 1.0}, {"beta2": 1.0}])
def test_bad_settings_raise(changes):
    with pytest.raises(ConfigError):
        DynamicConfig(**changes)
