"""Growing a trained model's vocabulary without changing what it predicts for the old characters.

New characters take the ids after the old ones. Their output rows start with zero weights and
a bias of ``NEW_CHAR_BIAS``: a probability about e^-30 of the others', so the old characters'
predictions are unchanged to float precision, while the zero weights learn at Adam's usual pace.
Their inputs start as the mean embedding (embedding input) or as nothing (one-hot input). The
tutorial's scalar input, ``id / V``, has its first-layer weights scaled by ``V_new / V_old`` so
the old characters' inputs reach the cells exactly as before.
"""

from __future__ import annotations

import torch

from charlstm.config.choices import InputEncoding
from charlstm.errors import ConfigError
from charlstm.model.network import CharLSTM

NEW_CHAR_BIAS = -30.0
_FIRST_INPUT = "rnn.weight_ih_l0"  # (gates * H, input features)


@torch.no_grad()
def grown_state(model: CharLSTM, vocab_size: int) -> dict[str, torch.Tensor]:
    """``model``'s weights for ``vocab_size`` characters, the first ``model``'s own."""
    old = model.config.vocab_size
    if vocab_size < old:
        raise ConfigError(f"a vocabulary can only grow: {old} characters cannot become {vocab_size}")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    added = vocab_size - old
    if added == 0:
        return state
    encoding = model.config.input_encoding
    if encoding == InputEncoding.EMBEDDING:
        table = state["embedding.weight"]  # (V, E)
        state["embedding.weight"] = torch.cat([table, table.mean(0, keepdim=True).expand(added, -1)])
    elif encoding == InputEncoding.ONE_HOT:
        w = state[_FIRST_INPUT]  # (gates * H, V)
        state[_FIRST_INPUT] = torch.cat([w, w.new_zeros(w.shape[0], added)], dim=1)
    else:  # scalar: the input is id / V, and V grows
        state[_FIRST_INPUT] = state[_FIRST_INPUT] * (vocab_size / old)
    head_w, head_b = state["head.weight"], state["head.bias"]  # (V, H), (V,)
    state["head.weight"] = torch.cat([head_w, head_w.new_zeros(added, head_w.shape[1])])
    state["head.bias"] = torch.cat([head_b, head_b.new_full((added,), NEW_CHAR_BIAS)])
    return state
