"""The one loss helper, shared by training and evaluation, and what a score is."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

NATS_TO_BITS = 1.0 / math.log(2.0)


def char_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in nats per character; logits (..., V), targets (...)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


def bits_per_char(loss: float) -> float:
    """Nats per character (the loss) in bits per character."""
    return loss * NATS_TO_BITS


# Past this, e^loss overflows a float: no trained model is there, so training calls it divergence.
MAX_LOSS = 709.0


@dataclass(frozen=True)
class EvalResult:
    """A score: mean loss over ``characters`` predictions."""

    loss: float  # mean cross-entropy, nats per character
    characters: int  # how many predictions were scored

    @property
    def bits_per_char(self) -> float:
        return bits_per_char(self.loss)

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss) if self.loss < MAX_LOSS else math.inf

    def as_dict(self) -> dict[str, float | None]:
        # JSON has no infinity: a perplexity past float range is written as null.
        perplexity = self.perplexity if math.isfinite(self.perplexity) else None
        return {**asdict(self), "bits_per_char": self.bits_per_char, "perplexity": perplexity}
