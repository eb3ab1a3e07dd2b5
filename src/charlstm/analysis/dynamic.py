"""Dynamic evaluation (Krause et al., 2018): a model that keeps learning from the text it scores.

The held-out text is read once, in order, as one stream, in segments of
``seq_len`` characters with the state carried. Each segment is scored first,
then the weights take one step on that segment's loss, so every character is
predicted by weights that have seen only the text before it. The step is
RMS-normalised (the gradient divided by the root of its running mean square, as
in RMSprop, gathered from the segments already read) and the weights decay
towards the trained ones, so the model adapts to the text's recent style
without drifting away from what it learnt.

The model scored is a copy with every dropout off: the caller's model and the
run's checkpoints are never changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from charlstm.config.dynamic import DynamicConfig
from charlstm.data.prepared import to_tensor
from charlstm.errors import CorpusError
from charlstm.framing.stream import evaluate_stream
from charlstm.model.loss import EvalResult, char_loss
from charlstm.model.network import CharLSTM, detach_state


@dataclass(frozen=True)
class DynamicResult:
    """The same stream scored with frozen weights (static) and while adapting (dynamic)."""

    static: EvalResult
    dynamic: EvalResult


def dynamic_evaluate(model: CharLSTM, ids: np.ndarray, config: DynamicConfig | None = None, *,
                     device: torch.device | str = "cpu", progress: bool = False) -> DynamicResult:
    """Score ``ids`` with frozen weights, then again adapting to the text as it is read."""
    config = config or DynamicConfig()
    if len(ids) < 2:
        raise CorpusError("need at least 2 characters to evaluate")
    device = torch.device(device)
    n = len(ids) - 1
    static = evaluate_stream(_frozen_copy(model, device), ids, device=device, rows=1)
    dynamic = score_segments(_frozen_copy(model, device), ids, config, adapt=True, device=device,
                             progress=progress)
    return DynamicResult(static=static, dynamic=EvalResult(sum(dynamic) / n, n))


def score_segments(model: CharLSTM, ids: np.ndarray, config: DynamicConfig, *, adapt: bool,
                   device: torch.device, progress: bool = False) -> list[float]:
    """One stream through ``ids`` in segments: each segment's summed loss (nats), in order.

    With ``adapt``, the weights take a step on each segment after it is scored.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if adapt:
        trained = [p.detach().clone() for p in params]
        mean_square = [torch.zeros_like(p) for p in params]
    state = model.init_state(1, device)
    sums = []
    n = len(ids) - 1
    starts = range(0, n, config.seq_len)
    if progress:
        from tqdm import tqdm  # only for long interactive scoring

        # disable=None: a bar on a terminal only; in a file or a pipe its frames would pile up.
        starts = tqdm(starts, desc="dynamic eval", unit="seg", leave=False, disable=None)
    for updates, start in enumerate(starts, 1):
        stop = min(start + config.seq_len, n)
        x = to_tensor(ids[start:stop]).unsqueeze(0).to(device)  # (1, T)
        y = to_tensor(ids[start + 1:stop + 1]).unsqueeze(0).to(device)
        with torch.set_grad_enabled(adapt):
            logits, state = model(x, state)  # (1, T, V)
            loss = char_loss(logits, y)
        sums.append(loss.detach().double() * y.numel())  # scored before anything is learnt from it
        state = detach_state(state)
        if adapt:
            grads = torch.autograd.grad(loss, params)
            _step(params, grads, trained, mean_square, config, updates)
    return torch.stack(sums).tolist()


@torch.no_grad()
def _step(params: list[torch.Tensor], grads: tuple[torch.Tensor, ...], trained: list[torch.Tensor],
          mean_square: list[torch.Tensor], config: DynamicConfig, updates: int) -> None:
    correction = 1.0 - config.beta2 ** updates  # the running mean starts at zero
    for p, g, p0, ms in zip(params, grads, trained, mean_square, strict=True):
        ms.mul_(config.beta2).addcmul_(g, g, value=1.0 - config.beta2)
        p.addcdiv_(g, (ms / correction).sqrt_().add_(config.eps), value=-config.lr)
        if config.decay:
            p.add_(p0 - p, alpha=config.decay)


def _frozen_copy(model: CharLSTM, device: torch.device) -> CharLSTM:
    """A copy with every dropout off, in training mode (cuDNN's RNN backward needs it).

    Built from the config, so it freezes what the original froze (the Keras init's bias_hh).
    """
    clone = CharLSTM(model.config.without_dropout())
    clone.load_state_dict(model.state_dict())
    return clone.to(device).train()
