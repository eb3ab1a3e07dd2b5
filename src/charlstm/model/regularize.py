"""The dropouts of the strongest word- and character-level LSTMs (AWD-LSTM, Merity et al., 2018).

- **Weight drop** (DropConnect on the recurrent weights): one mask on each
  layer's ``weight_hh`` per forward pass, so every time step of the batch sees
  the same dropped connections. The dropped matrix is handed to the same fused
  LSTM kernel ``nn.LSTM`` calls, so training keeps its speed.
- **Locked (variational) dropout**: one mask per sequence, the same at every
  time step, on a layer's inputs or outputs, rather than a new one per step.
- **Embedding dropout**: whole characters removed from the embedding matrix
  (their rows zeroed, the rest scaled up) for the batch.

All of them act in training only; evaluation and generation run the plain
``nn.LSTM`` path, unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def locked_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """(B, T, F) -> the same, one dropout mask per row shared by all T steps."""
    if p == 0.0:
        return x
    mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1.0 - p) / (1.0 - p)  # (B, 1, F)
    return x * mask


def embedding_dropout(embedding: nn.Embedding, ids: torch.Tensor, p: float) -> torch.Tensor:
    """Look ``ids`` (B, T) up in ``embedding`` with each character's row dropped with probability p."""
    weight = embedding.weight  # (V, E)
    mask = weight.new_empty(weight.shape[0], 1).bernoulli_(1.0 - p) / (1.0 - p)  # (V, 1)
    return F.embedding(ids, weight * mask)


def lstm_layers(
    rnn: nn.LSTM, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], *, weight_drop: float,
    between: float, locked: bool,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """``rnn(x, state)`` in training, one layer at a time, with weight drop and the chosen dropout.

    x (B, T, I), state (L, B, H) each -> output (B, T, H) and the new state. ``between`` is
    the dropout between layers: locked (one mask per row) or per step, as ``locked`` says.
    """
    h0, c0 = state
    hs, cs = [], []
    for layer in range(rnn.num_layers):
        w_ih, w_hh, b_ih, b_hh = (getattr(rnn, f"{name}_l{layer}")
                                  for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        if weight_drop:
            w_hh = F.dropout(w_hh, weight_drop, training=True)
        # torch.lstm is the fused kernel behind nn.LSTM.forward: (input, hx, weights, has_biases,
        # num_layers, dropout, train, bidirectional, batch_first).
        x, h, c = torch.lstm(x, (h0[layer:layer + 1], c0[layer:layer + 1]), [w_ih, w_hh, b_ih, b_hh],
                             True, 1, 0.0, True, False, True)
        hs.append(h)
        cs.append(c)
        if layer < rnn.num_layers - 1 and between:
            x = locked_dropout(x, between) if locked else F.dropout(x, between, training=True)
    return x, (torch.cat(hs), torch.cat(cs))
