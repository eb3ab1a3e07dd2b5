"""The character-level recurrent language model.

Dimensions, named once: B batch, T time (characters), V vocabulary,
E embedding (input features per character), H hidden, L layers.

Contract shared by every cell (``lstm``, ``gru``, ``rnn``), so one trainer and
one sampler serve them all::

    logits, state = model(ids, state)   # ids (B, T) int64 -> logits (B, T, V)

``logits`` are raw scores, never softmaxed; ``state`` is a tuple of (L, B, H)
tensors (``(h, c)`` for the LSTM, ``(h,)`` for the others) that can be fed
back in to continue the sequence where it stopped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

from charlstm.config.choices import Cell, GateActivation, Init, InputEncoding
from charlstm.config.model import ModelConfig
from charlstm.errors import ConfigError
from charlstm.model.lstm import ActivationLSTM
from charlstm.model.regularize import embedding_dropout, locked_dropout, lstm_layers

State = tuple[torch.Tensor, ...]

CELLS = {Cell.LSTM: nn.LSTM, Cell.GRU: nn.GRU, Cell.RNN: nn.RNN}
# Characters per forward call when reading a prompt: a 1 MB prompt read in one call would hold
# (1, 10^6, H) outputs and (1, 10^6, V) logits; in chunks it holds (1, PRIME_CHUNK, .) at a time.
PRIME_CHUNK = 4096


class CharLSTM(nn.Module):
    """Input encoding -> recurrent layers -> dropout -> linear head."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.vocab_size < 1:
            raise ConfigError("vocab_size must be set before building a model")
        self.config = config
        self.embedding = (
            nn.Embedding(config.vocab_size, config.embedding_size)
            if config.input_encoding == InputEncoding.EMBEDDING
            else None
        )
        rnn_args = (config.input_size, config.hidden_size)
        rnn_kwargs = {
            "num_layers": config.num_layers,
            "dropout": config.dropout if config.num_layers > 1 else 0.0,
            "batch_first": True,
        }
        if config.gate_activation != GateActivation.SIGMOID:
            self.rnn = ActivationLSTM(*rnn_args, **rnn_kwargs, gate_activation=config.gate_activation)
        else:
            self.rnn = CELLS[config.cell](*rnn_args, **rnn_kwargs)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)
        if config.init == Init.KERAS:
            self._init_keras()

    def _init_keras(self) -> None:
        """Match Keras's LSTM/Dense defaults so the tutorial presets start alike.

        Keras keeps one bias vector; PyTorch adds ``bias_ih`` and ``bias_hh``.
        ``bias_ih`` plays Keras's bias and ``bias_hh`` is held at zero and
        frozen, so the trainable parameter count equals Keras's.
        """
        H = self.config.hidden_size
        for name, param in self.rnn.named_parameters():
            if name.startswith("weight_ih"):
                nn.init.xavier_uniform_(param)  # glorot_uniform, fan_in=I, fan_out=4H
            elif name.startswith("weight_hh"):
                # Keras draws an orthogonal (H, 4H) kernel; ours is its transpose.
                nn.init.orthogonal_(param)
            elif name.startswith("bias_ih"):
                nn.init.zeros_(param)
                if self.config.cell == Cell.LSTM:
                    with torch.no_grad():
                        param[H : 2 * H] = 1.0  # unit_forget_bias; gate order i, f, g, o
            elif name.startswith("bias_hh"):
                nn.init.zeros_(param)
                param.requires_grad_(False)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def encode_inputs(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, T, E) features."""
        if self.embedding is not None:
            if self.training and self.config.embedding_dropout:
                return embedding_dropout(self.embedding, ids, self.config.embedding_dropout)
            return self.embedding(ids)
        if self.config.input_encoding == InputEncoding.ONE_HOT:
            return F.one_hot(ids, self.config.vocab_size).to(self.head.weight.dtype)
        return (ids.to(self.head.weight.dtype) / self.config.vocab_size).unsqueeze(-1)

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        cfg = self.config
        x = self.encode_inputs(ids)  # (B, T, E)
        if state is None:
            state = self.init_state(ids.shape[0], ids.device)
        rnn_state = state if cfg.cell == Cell.LSTM else state[0]
        if self.training and (cfg.weight_drop or cfg.locked_dropout or cfg.input_dropout):
            x = locked_dropout(x, cfg.input_dropout)
            out, new_state = lstm_layers(self.rnn, x, rnn_state, weight_drop=cfg.weight_drop,
                                         between=self.rnn.dropout, locked=cfg.locked_dropout)
            out = locked_dropout(out, cfg.dropout) if cfg.locked_dropout else self.dropout(out)
        else:
            out, new_state = self.rnn(x, rnn_state)  # out (B, T, H)
            out = self.dropout(out)
        logits = self.head(out)  # (B, T, V)
        return logits, new_state if isinstance(new_state, tuple) else (new_state,)

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """Zero state for ``batch_size`` sequences; dtype and device follow the weights."""
        ref = self.head.weight
        h = ref.new_zeros(self.config.num_layers, batch_size, self.config.hidden_size)
        if device is not None:
            h = h.to(device)
        return (h, torch.zeros_like(h)) if self.config.cell == Cell.LSTM else (h,)

    def num_parameters(self, trainable_only: bool = True) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def describe_shapes(config: ModelConfig) -> tuple[int, dict[str, tuple[int, ...]]]:
    """Trainable parameter count and every tensor's shape, without allocating any weights.

    Built on PyTorch's meta device, so a config claiming 10^7 hidden units costs nothing:
    loaders compare these shapes with a file's before building the real model.
    """
    with torch.device("meta"):
        model = CharLSTM(config)
    return model.num_parameters(), {k: tuple(v.shape) for k, v in model.state_dict().items()}


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode (dropout off) inside the block, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def detach_state(state: State) -> State:
    """Cut the graph between batches (truncated BPTT).

    The values carry on so the next batch continues the text, but gradients
    stop here; otherwise backward would reach back through every earlier batch.
    """
    return tuple(s.detach() for s in state)



@torch.no_grad()
def prime(model: CharLSTM, ids: torch.Tensor, state: State | None = None, *,
          chunk: int = PRIME_CHUNK) -> tuple[torch.Tensor, State]:
    """Read (B, P) ids ``chunk`` at a time, state carried; return the last logits (B, V) and the state.

    The same as one ``model(ids, state)`` call, but memory is bounded by the chunk, not by P.
    Chunks move to the model's device one at a time. The caller chooses the mode (eval for
    generation: dropout off).
    """
    if ids.shape[1] == 0 or chunk < 1:
        raise ValueError("prime needs at least one id and a positive chunk")
    device = model.head.weight.device
    for start in range(0, ids.shape[1], chunk):
        logits, state = model(ids[:, start : start + chunk].to(device), state)  # (B, <=chunk, V)
    return logits[:, -1], state


@torch.no_grad()
def prime_many(model: CharLSTM, prompts: Sequence[torch.Tensor], *,
               chunk: int = PRIME_CHUNK) -> tuple[torch.Tensor, State]:
    """Read prompts (each (P_i,) ids, any lengths) in one batch: last logits (N, V), state each (L, N, H).

    Rows come back in the order given. One prompt is ``prime`` itself. Several are read longest
    first, each chunk of columns as a packed sequence of the rows still going, so a row's state
    is its own prompt's end, never padding's; a chunk holds about ``chunk`` characters in all.
    Batched, the matmuls round differently from one row alone: the logits agree with
    ``prime``'s to float rounding (about 1e-8 for the 2 x 512 model), not bit for bit.
    """
    if not prompts or min(len(p) for p in prompts) == 0 or chunk < 1:
        raise ValueError("prime_many needs prompts of at least one id and a positive chunk")
    if len(prompts) == 1:
        return prime(model, prompts[0][None, :], chunk=chunk)
    if type(model.rnn) not in CELLS.values():  # a cell of our own takes no packed sequence
        reads = [prime(model, p[None, :], chunk=chunk) for p in prompts]
        return (torch.cat([logits for logits, _ in reads]),
                tuple(torch.cat(parts, dim=1) for parts in zip(*(state for _, state in reads), strict=True)))
    device = model.head.weight.device
    lengths = torch.tensor([len(p) for p in prompts])
    order = torch.argsort(lengths, descending=True, stable=True)
    ids = pad_sequence([prompts[i] for i in order.tolist()], batch_first=True)  # (N, P_max), longest first
    lengths = lengths[order]
    state = model.init_state(len(prompts), device)  # each (L, N, H)
    chunk = max(1, chunk // len(prompts))  # columns per call
    for start in range(0, ids.shape[1], chunk):
        k = int((lengths > start).sum())  # the rows still going: a prefix, since sorted
        steps = (lengths[:k] - start).clamp(max=chunk)
        x = model.encode_inputs(ids[:k, start : start + chunk].to(device))  # (k, <=chunk, E)
        part = tuple(s[:, :k] for s in state)
        _, new = model.rnn(pack_padded_sequence(x, steps, batch_first=True),
                           part if model.config.cell == Cell.LSTM else part[0])
        for s, n in zip(state, new if isinstance(new, tuple) else (new,), strict=True):
            s[:, :k] = n
    # The last layer's h is its output at each row's own last step (dropout is off in eval).
    logits = model.head(state[0][-1])  # (N, V)
    back = order.argsort().to(device)  # each given prompt's row in the sorted batch
    return logits[back], tuple(s[:, back] for s in state)
