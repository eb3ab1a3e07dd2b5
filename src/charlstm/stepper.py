"""One character at a time, fast: the model's single-step path for generation.

``nn.LSTM`` is built for long sequences; called once per character it spends
most of its time on checks and setup. ``LSTMStepper`` computes the same step
with a handful of tensor ops on buffers allocated once:

- the first layer's input projection is a table lookup: whatever the input
  encoding (embedding, one-hot, scalar), ``x W_ih^T + b`` has only V possible
  values, precomputed as a (V, 4H) table;
- each layer is one ``addmm`` for the gates plus the element-wise cell update,
  written into the state in place;
- the head is one ``addmm`` into a logits buffer.

It serves LSTMs with sigmoid gates; other cells step through the model itself.
"""

from __future__ import annotations

import torch

from charlstm.model import CharLSTM, State


class LSTMStepper:
    """Single-step inference for a ``CharLSTM`` LSTM; numerically the model's own forward."""

    def __init__(self, model: CharLSTM, batch_size: int):
        config = model.config
        H, L = config.hidden_size, config.num_layers
        rnn = model.rnn
        with torch.no_grad():
            vocab_ids = torch.arange(config.vocab_size, device=model.head.weight.device)
            inputs = model.encode_inputs(vocab_ids[None, :])[0]  # (V, E): every possible input
            self.table = (inputs @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + rnn.bias_hh_l0).contiguous()
            self.w_ih = [getattr(rnn, f"weight_ih_l{k}").T.contiguous() for k in range(1, L)]  # (H, 4H)
            self.bias = [(getattr(rnn, f"bias_ih_l{k}") + getattr(rnn, f"bias_hh_l{k}")) for k in range(L)]
            self.w_hh = [getattr(rnn, f"weight_hh_l{k}").T.contiguous() for k in range(L)]  # (H, 4H)
            self.head_w, self.head_b = model.head.weight.T.contiguous(), model.head.bias.clone()
        ref = self.table
        self.H, self.L = H, L
        self.gates = ref.new_empty(batch_size, 4 * H)  # (B, 4H)
        self.logits = ref.new_empty(batch_size, config.vocab_size)  # (B, V)

    @torch.no_grad()
    def step(self, ids: torch.Tensor, state: State) -> torch.Tensor:
        """Advance ``state`` (h, c: (L, B, H), updated in place) by ``ids`` (B,); return logits (B, V)."""
        h, c = state
        H, gates = self.H, self.gates
        x = None
        for layer in range(self.L):
            if layer == 0:
                torch.index_select(self.table, 0, ids, out=gates)
                gates.addmm_(h[0], self.w_hh[0])
            else:
                torch.addmm(self.bias[layer], x, self.w_ih[layer - 1], out=gates)
                gates.addmm_(h[layer], self.w_hh[layer])
            # Gate order i, f, g, o: sigmoid all four in place, then redo g as tanh.
            g = gates[:, 2 * H : 3 * H].tanh()
            gates.sigmoid_()
            i, f, o = gates[:, :H], gates[:, H : 2 * H], gates[:, 3 * H :]
            c[layer].mul_(f).addcmul_(i, g)
            torch.mul(o, c[layer].tanh(), out=h[layer])
            x = h[layer]
        return torch.addmm(self.head_b, x, self.head_w, out=self.logits)


def supports_fast_steps(model: CharLSTM) -> bool:
    return model.config.cell == "lstm" and model.config.gate_activation == "sigmoid"
