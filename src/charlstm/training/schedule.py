"""The optimizer and its learning-rate schedule."""

from __future__ import annotations

import math

import torch

from charlstm.config.choices import LRSchedule, Optimizer
from charlstm.config.train import TrainConfig
from charlstm.model.network import CharLSTM


def lr_factor(config: TrainConfig, step: int, budget_fraction: float) -> float:
    """Multiplier of ``config.lr`` at ``step``; ``budget_fraction`` is how much of the run is spent."""
    if config.lr_schedule == LRSchedule.CONSTANT:
        return 1.0
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, budget_fraction)))
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine


def make_optimizer(model: CharLSTM, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]  # Keras presets freeze bias_hh
    cls = torch.optim.AdamW if config.optimizer == Optimizer.ADAMW else torch.optim.Adam
    return cls(
        params, lr=config.lr, betas=(0.9, config.beta2), eps=config.adam_eps,
        weight_decay=config.weight_decay,
    )
