"""Sampling: from a step's logits to the next character ids."""

from __future__ import annotations

import random

import torch

from charlstm.config.sample import SampleConfig


def filter_logits(logits: torch.Tensor, config: SampleConfig) -> torch.Tensor:
    """Scale by temperature and mask what top-k / top-p exclude (to -inf); (B, V) -> (B, V).

    May return ``logits`` itself (temperature 1, no filter): do not write into the result.
    """
    logits = logits.float()
    if config.temperature != 1.0:
        # The best at 0 first: at a tiny temperature l / T overflows to inf, and top-p's softmax
        # would turn inf - inf into NaN; shifted, the others only fall towards -inf.
        logits = (logits - logits.amax(dim=-1, keepdim=True)) / config.temperature
    if config.top_k is not None and config.top_k < logits.shape[-1]:
        kth = torch.topk(logits, config.top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if config.top_p is not None and config.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a character once the ones before it already reach top_p; the first always stays.
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= config.top_p
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    return logits


def draw_noise(generator: torch.Generator, steps: int, rows: int, vocab: int, config: SampleConfig,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """Sampling noise for ``steps`` steps at once, (steps, rows, vocab): ``T * log E``, E ~ Exp(1).

    Drawn for many steps at once it costs one call instead of one per step, and the random
    stream is the same as drawing step by step (the generators fill tensors in order).
    """
    noise = torch.empty(steps, rows, vocab, device=device)
    if rows * vocab <= 512:
        noise.exponential_(generator=generator).log_()
    else:  # for many rows, -log(U) from vectorised uniforms beats exponential_'s scalar loop
        noise.uniform_(generator=generator).log_().neg_().log_()
    if config.top_k is None and config.top_p is None and config.temperature != 1.0:
        # argmax(l / T - log E) = argmax(l - T log E): scaling the noise spares dividing the logits.
        noise.mul_(config.temperature)
    return noise


def draw_seed() -> int:
    """A fresh random seed, to use and to report so a sample can be made again."""
    return random.SystemRandom().randrange(2**31)


def make_generator(seed: int | None, device: torch.device) -> tuple[torch.Generator, int]:
    """A seeded generator, and the seed used (drawn at random when none is given)."""
    if seed is None:
        seed = draw_seed()
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator, seed


SEED_STRIDE = 0x9E3779B97F4A7C15  # sample j's seed: the request's plus j strides (mod 2**63), well apart


def sample_seed(seed: int, sample: int) -> int:
    """The seed of sample ``sample`` of a batch seeded ``seed``; sample 0 keeps ``seed`` itself."""
    return (seed + sample * SEED_STRIDE) % 2**63


def sample_generators(seed: int, samples: int, device: torch.device) -> list[torch.Generator]:
    """One generator per sample, so a sample's text does not depend on how many are drawn beside it."""
    return [make_generator(sample_seed(seed, j), device)[0] for j in range(samples)]


SAMPLE_TEMPERATURES = (0.2, 0.5, 0.8, 1.0)  # the report's and the training log's samples
