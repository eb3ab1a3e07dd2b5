"""An LSTM whose gate activation can be chosen, for Keras 2.0-2.2 models.

Keras 2.0-2.2 gates with ``hard_sigmoid`` (clip(0.2 x + 0.5, 0, 1)); PyTorch's
fused ``nn.LSTM`` only does the logistic sigmoid. This module computes the same
equations step by step with a chosen gate function. It keeps ``nn.LSTM``'s
parameter names, shapes and gate order (i, f, g, o), and its call contract
(``batch_first`` input, ``(h, c)`` of shape (L, B, H)), so checkpoints and
the rest of the model do not care which one runs. It is used only when the
gate activation is not the sigmoid: the fused kernel is much faster.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from charlstm.config.choices import GateActivation


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """Keras 2's piecewise-linear sigmoid: clip(0.2 x + 0.5, 0, 1)."""
    return (0.2 * x + 0.5).clamp(0.0, 1.0)


GATE_ACTIVATIONS = {GateActivation.SIGMOID: torch.sigmoid, GateActivation.HARD_SIGMOID: hard_sigmoid}


class ActivationLSTM(nn.Module):
    """Multi-layer LSTM with a selectable gate activation, ``nn.LSTM``-compatible."""

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
        batch_first: bool = True, gate_activation: str = GateActivation.HARD_SIGMOID,
    ):
        super().__init__()
        if not batch_first:
            raise ValueError("ActivationLSTM supports batch_first=True only")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.dropout = dropout
        self.gate = GATE_ACTIVATIONS[gate_activation]
        for layer in range(num_layers):
            in_size = input_size if layer == 0 else hidden_size
            shapes = {"weight_ih": (4 * hidden_size, in_size), "weight_hh": (4 * hidden_size, hidden_size),
                      "bias_ih": (4 * hidden_size,), "bias_hh": (4 * hidden_size,)}
            for name, shape in shapes.items():
                self.register_parameter(f"{name}_l{layer}", nn.Parameter(torch.empty(shape)))
        bound = 1.0 / math.sqrt(hidden_size)  # nn.LSTM's default initialisation
        for param in self.parameters():
            nn.init.uniform_(param, -bound, bound)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h0, c0 = state  # (L, B, H) each
        H = self.hidden_size
        h_out, c_out = [], []
        layer_input = x  # (B, T, I)
        for layer in range(self.num_layers):
            w_ih, w_hh = getattr(self, f"weight_ih_l{layer}"), getattr(self, f"weight_hh_l{layer}")
            bias = getattr(self, f"bias_ih_l{layer}") + getattr(self, f"bias_hh_l{layer}")
            # The input projection of every step at once; only the recurrence is sequential.
            projected = F.linear(layer_input, w_ih, bias)  # (B, T, 4H)
            h, c = h0[layer], c0[layer]
            outputs = []
            for t in range(projected.shape[1]):
                z = projected[:, t] + F.linear(h, w_hh)  # (B, 4H), gate order i, f, g, o
                i, f, o = self.gate(z[:, :H]), self.gate(z[:, H : 2 * H]), self.gate(z[:, 3 * H :])
                c = f * c + i * torch.tanh(z[:, 2 * H : 3 * H])
                h = o * torch.tanh(c)
                outputs.append(h)
            layer_input = torch.stack(outputs, dim=1)  # (B, T, H)
            h_out.append(h)
            c_out.append(c)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, training=True)
        return layer_input, (torch.stack(h_out), torch.stack(c_out))
