"""Sampling: from a step's logits to the next character ids.

``Sampler`` is the one sampling step: every generator (the CLI, the library, the service's
per-request path and its batched scheduler) turns logits into ids through it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch

from charlstm.config.sample import SampleConfig


class Sampler:
    """One SampleConfig's step: temperature, then top-k, top-p and min-p, then the draw.

    The draw is an exponential race: with E ~ Exp(1) per character, argmax(l - log E) is
    distributed as softmax(l), so no softmax, normalisation or multinomial call is needed. Its
    noise (``noise``) is drawn a block of steps at a time; ``next_ids`` runs the race.
    """

    def __init__(self, config: SampleConfig):
        self.temperature, self.greedy = config.temperature, config.greedy
        self.top_k, self.top_p, self.min_p = config.top_k, config.top_p, config.min_p
        self.repeat = RepeatPenalty.of(config)
        # Filtered: ``scores`` has work to do every step. Greedy needs none (the filters keep the best).
        self.filtered = not self.greedy and (
            (self.top_k, self.top_p, self.min_p) != (None, None, None) or self.repeat is not None)
        # ``scores`` changes what the race compares: filtered, or greedy with the repetition control.
        self.rescores = self.filtered or self.repeat is not None

    def noise(self, generator: torch.Generator, steps: int, rows: int, vocab: int,
              device: torch.device | str = "cpu") -> torch.Tensor:
        """The race's noise for ``steps`` steps of ``rows`` rows, (steps, rows, vocab)."""
        noise = draw_noise(generator, steps, rows, vocab, device)  # log E
        if not self.filtered and self.temperature != 1.0:
            # The temperature, folded into the noise: argmax(l / T - log E) = argmax(l - T log E)
            # for T > 0. Scaled once per block here, it spares a division of the logits at every
            # step (at batch 1 each tensor op counts). The filters need l / T itself (scores).
            noise.mul_(self.temperature)
        return noise

    def scores(self, logits: torch.Tensor, histories: Sequence[Sequence[int]] | None = None) -> torch.Tensor:
        """What the race compares, (B, V) -> (B, V): ``logits / T`` with what the filters drop at -inf.

        Unfiltered, the logits themselves (the temperature is in the noise); may return ``logits``
        itself: do not write into the result. Greedy: only the repetition control applies (neither
        the temperature nor a filter moves the best).
        """
        if not self.rescores:
            return logits
        logits = logits.float()
        if self.repeat is not None and histories is not None:
            logits = self.repeat.apply(logits, histories)  # on the raw logits, before the temperature
        if self.greedy:
            return logits
        if self.temperature != 1.0:
            # The best at 0 first: at a tiny temperature l / T overflows to inf, and top-p's softmax
            # would turn inf - inf into NaN; shifted, the others only fall towards -inf.
            logits = (logits - logits.amax(dim=-1, keepdim=True)) / self.temperature
        if self.top_k is not None and self.top_k < logits.shape[-1]:
            kth = torch.topk(logits, self.top_k, dim=-1).values[:, -1:]  # (B, 1)
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p is not None and self.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
            probs = sorted_logits.softmax(dim=-1)
            # Drop a character once the ones before it already reach top_p; the first always stays.
            drop_sorted = (probs.cumsum(dim=-1) - probs) >= self.top_p
            logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
        if self.min_p is not None:
            # p >= min_p * p_max, in logits: l - l_max >= log(min_p), with no softmax. Renormalising
            # what top-k and top-p kept leaves each p / p_max as it was, so the logits here serve.
            floor = logits.amax(dim=-1, keepdim=True) + math.log(self.min_p)  # (B, 1)
            logits = logits.masked_fill(logits < floor, float("-inf"))
        return logits

    def next_ids(self, logits: torch.Tensor, noise: torch.Tensor,
                 histories: Sequence[Sequence[int]] | None = None) -> torch.Tensor:
        """The next id of each row of (B, V) ``logits``, with this step's (B, V) ``noise`` (overwritten).

        Greedy reads no noise: ``noise`` may then be None. ``histories``: each row's text so far
        (ids), which the repetition control reads.
        """
        if self.greedy:
            return self.scores(logits, histories).argmax(dim=-1)
        scores = self.scores(logits, histories) if self.filtered else logits  # at batch 1 each call counts
        return race(scores, noise, out=noise)


class RepeatPenalty:
    """DRY ("don't repeat yourself") for characters: a penalty on the character that would extend
    a repeat of an earlier stretch of the text beyond ``allowed`` characters.

    A per-character frequency penalty would punish every common letter ('e', ' ') and wreck the
    text; what loops look like in a character model is a long stretch said again. For each
    earlier place where the last character occurred, the match length k is how far the text
    before it equals the text now; the character that followed there would make the repeat
    k + 1 long, and is penalised ``multiplier * base ** (k - allowed)`` once k reaches
    ``allowed``. Only the last ``WINDOW`` characters are searched (a Python loop per row: on,
    it costs time; off, nothing).
    """

    WINDOW = 512

    def __init__(self, multiplier: float, base: float, allowed: int):
        self.multiplier, self.base, self.allowed = multiplier, base, allowed

    @classmethod
    def of(cls, config: SampleConfig) -> RepeatPenalty | None:
        """``config``'s repetition control; None when it is off."""
        if config.dry_multiplier is None:
            return None
        return cls(config.dry_multiplier, config.dry_base, config.dry_allowed_length)

    def penalties(self, history: Sequence[int]) -> dict[int, float]:
        """Character id -> how much to lower its logit after ``history``."""
        h = list(history[-self.WINDOW :])
        n, longest = len(h), {}
        for j in range(n - 2, -1, -1):  # earlier places of the last character
            if h[j] != h[-1]:
                continue
            k = 1
            while k <= j and h[j - k] == h[n - 1 - k]:
                k += 1
            nxt = h[j + 1]
            if k > longest.get(nxt, 0):
                longest[nxt] = k
        return {c: self.multiplier * self.base ** (k - self.allowed)
                for c, k in longest.items() if k >= self.allowed}

    def apply(self, logits: torch.Tensor, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        """(B, V) logits less each row's penalties; a new tensor when any applies."""
        copied = False
        for row, history in enumerate(histories):
            penalties = self.penalties(history)
            if penalties:
                if not copied:  # the caller's logits may be the model's own: never written into
                    logits, copied = logits.clone(), True
                ids = torch.tensor(list(penalties), device=logits.device)
                logits[row, ids] -= torch.tensor(list(penalties.values()), device=logits.device)
        return logits


def race(scores: torch.Tensor, noise: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """The draw: argmax(scores - noise) per row, (B, V) -> (B,); ``out`` may be ``noise`` itself.

    A row whose noise is zeros takes its best score: greedy, as the scheduler's greedy rows do.
    """
    return torch.sub(scores, noise, out=out).argmax(dim=-1)


def draw_noise(generator: torch.Generator, steps: int, rows: int, vocab: int,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """Raw race noise for ``steps`` steps at once, (steps, rows, vocab): ``log E``, E ~ Exp(1).

    Drawn for many steps at once it costs one call instead of one per step, and the random
    stream is the same as drawing step by step (the generators fill tensors in order).
    ``Sampler.noise`` adds the temperature.
    """
    noise = torch.empty(steps, rows, vocab, device=device)
    if rows * vocab <= 512:
        noise.exponential_(generator=generator).log_()
    else:  # for many rows, -log(U) from vectorised uniforms beats exponential_'s scalar loop
        noise.uniform_(generator=generator).log_().neg_().log_()
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
