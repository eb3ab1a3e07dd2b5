"""The one loss helper, shared by training and evaluation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def char_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in nats per character; logits (..., V), targets (...)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


NATS_TO_BITS = 1.0 / math.log(2.0)
