"""One character at a time, fast: the model's single-step path for generation.

``nn.LSTM`` is built for long sequences; called once per character it spends
most of its time on checks and setup. ``LSTMStepper`` computes the same step
with a handful of tensor ops on buffers and views made once:

- the first layer's input projection is a table lookup: whatever the input
  encoding (embedding, one-hot, scalar), ``x W_ih^T + b`` has only V possible
  values, precomputed as a (V, 4H) table;
- each layer is one ``addmm`` for the gates plus the element-wise cell update,
  written into the carried state in place;
- the head is one ``addmm`` into a logits buffer.

At batch 1 a step is bound by reading the recurrent weights (4H x H floats), so
what is left to cut is per-call overhead: no allocation, no view made per step.
It serves LSTMs with sigmoid gates; other cells step through the model itself.
"""

from __future__ import annotations

import copy

import torch

from charlstm.config.choices import Cell, GateActivation
from charlstm.model.network import CharLSTM, State


class LSTMStepper:
    """Single-step inference for a ``CharLSTM`` LSTM; numerically the model's own forward.

    ``state`` (h, c), each (L, B, H), is advanced in place by every ``step``. The weights are
    copied out of autograd's sight once, so ``step`` needs no grad-mode switch per call.
    """

    def __init__(self, model: CharLSTM, state: State):
        config = model.config
        H, L = config.hidden_size, config.num_layers
        rnn = model.rnn
        h, c = state
        B = h.shape[1]
        with torch.no_grad():
            vocab_ids = torch.arange(config.vocab_size, device=model.head.weight.device)
            inputs = model.encode_inputs(vocab_ids[None, :])[0]  # (V, E): every possible input
            self.table = (inputs @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + rnn.bias_hh_l0).contiguous()
            self.w_ih = [None] + [_transposed_copy(getattr(rnn, f"weight_ih_l{k}")) for k in range(1, L)]
            self.bias = [getattr(rnn, f"bias_ih_l{k}") + getattr(rnn, f"bias_hh_l{k}") for k in range(L)]
            self.w_hh = [_transposed_copy(getattr(rnn, f"weight_hh_l{k}")) for k in range(L)]  # (H, 4H)
            self.head_w, self.head_b = _transposed_copy(model.head.weight), model.head.bias.clone()
            for gate_rows in (self.table, *self.w_ih[1:], *self.bias, *self.w_hh):
                gate_rows[..., 2 * H : 3 * H] *= 2.0  # see step(): tanh(g) through sigmoid(2 g)
        self._bind(h, c, self.table.new_empty(B, 4 * H), self.table.new_empty(B, H),
                   self.table.new_empty(B, config.vocab_size))

    def _bind(self, h: torch.Tensor, c: torch.Tensor, gates: torch.Tensor, c_tanh: torch.Tensor,
              logits: torch.Tensor) -> None:
        """Step the state (h, c), each (L, B, H), through these buffers: gates (B, 4H), logits (B, V)."""
        self.state_hc, self.gates, self.c_tanh, self.logits = (h, c), gates, c_tanh, logits
        H = c_tanh.shape[1]
        g = gates  # gate order i, f, g, o
        self.i, self.f, self.g, self.o = g[:, :H], g[:, H : 2 * H], g[:, 2 * H : 3 * H], g[:, 3 * H :]
        self.h, self.c = list(h.unbind(0)), list(c.unbind(0))  # views into the caller's state

    def first_rows(self, rows: int) -> LSTMStepper:
        """A stepper of this one's first ``rows`` rows: the same weights, views of its state and buffers.

        A pool of B rows whose live ones are kept at the front steps only those, without copying.
        """
        view = copy.copy(self)  # shallow: the weights are shared, not copied
        h, c = self.state_hc
        view._bind(h[:, :rows], c[:, :rows], self.gates[:rows], self.c_tanh[:rows], self.logits[:rows])
        return view

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """Advance the state by ``ids`` (B,); return the logits (B, V) (a buffer reused next step)."""
        gates = self.gates
        for layer in range(len(self.h)):
            h, c = self.h[layer], self.c[layer]
            if layer == 0:
                torch.index_select(self.table, 0, ids, out=gates)
            else:
                torch.addmm(self.bias[layer], self.h[layer - 1], self.w_ih[layer], out=gates)
            gates.addmm_(h, self.w_hh[layer])
            # tanh(g) = 2 sigmoid(2 g) - 1: the g rows of every weight were doubled once, so one
            # sigmoid serves all four gates, and c = f c + i tanh(g) = f c + 2 i s - i.
            gates.sigmoid_()
            c.mul_(self.f).addcmul_(self.i, self.g, value=2.0).sub_(self.i)
            torch.mul(self.o, torch.tanh(c, out=self.c_tanh), out=h)
        return torch.addmm(self.head_b, self.h[-1], self.head_w, out=self.logits)


def _transposed_copy(weight: torch.Tensor) -> torch.Tensor:
    """``weight.T`` in its own memory, always.

    ``.T.contiguous()`` is not enough: with hidden_size 1 the transpose of a (4, 1) weight is
    already contiguous, so it would return a view of the model's own weight, and the in-place
    doubling of the g rows below would double the model's weights with every new stepper.
    """
    return weight.T.clone(memory_format=torch.contiguous_format)


def supports_fast_steps(model: CharLSTM) -> bool:
    return model.config.cell == Cell.LSTM and model.config.gate_activation == GateActivation.SIGMOID
