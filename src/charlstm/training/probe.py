"""The probes of the ``auto`` preset: short timed runs of training steps, then the rule's decision.

``plan_run`` is the preset's entry point: it times what ``sizing.decide`` compares (the reference
model in each precision, then narrower batches), lets it decide, then times the size it picked and
lets it decide again with that speed (see sizing.py, step 5). The rule itself is pure and lives in
sizing.py; everything here runs training steps on the device.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from charlstm.config.choices import Precision
from charlstm.config.model import ModelConfig
from charlstm.config.train import TrainConfig
from charlstm.model.loss import char_loss
from charlstm.model.network import CharLSTM
from charlstm.model.runtime import bf16_lstm_runs, check_bf16
from charlstm.training.schedule import make_optimizer
from charlstm.training.sizing import (
    LADDER,
    WIDTHS,
    Plan,
    Speeds,
    apply_choice,
    choose_precision,
    choose_rows,
    decide,
    needs_speed,
    reference_of,
    size_key,
)

PROBE_SECONDS = 1.0
# A step timed on a shared machine can take twice its usual time (another process, the allocator,
# a kernel's first call in a precision), and with 2 x 512 at 64 rows one second holds two steps: so
# the probe warms up twice and takes the median of at least three timed steps, not their mean. What
# it compares (precisions, widths) it times in turns, so that a machine slowing for seconds slows both.
WARMUP_STEPS = 2
MIN_TIMED_STEPS = 3


def plan_run(model: ModelConfig, train: TrainConfig, *, given: set[str], train_chars: int,
             device: torch.device) -> Plan:
    """Size ``model`` and ``train`` for ``train_chars`` and the run's limit; ``given`` fields are kept."""
    speeds = probe_speeds(model, train, given=given, train_chars=train_chars, device=device)
    plan = decide(model, train, speeds, given=given, train_chars=train_chars)
    if not needs_speed(train):
        return plan
    reference = size_key(reference_of(model, given))
    for _ in LADDER:  # each pass times a new size, so the ladder bounds the passes
        picked = size_key(apply_choice(model, train, plan.chosen)[0])
        if picked == reference or picked in speeds.by_size:
            break
        speed = probe_size(model, train, plan, device)
        speeds = replace(speeds, by_size={**speeds.by_size, picked: speed})
        plan = decide(model, train, speeds, given=given, train_chars=train_chars)
    return plan


def probe_size(model: ModelConfig, train: TrainConfig, plan: Plan, device: torch.device) -> float:
    """Characters/s of the size ``plan`` picked, with its precision, rows and regularisation."""
    model, train = apply_choice(model, train, plan.chosen)
    return probe_chars_per_s(model, train, device, min(PROBE_SECONDS, train.time_budget / 100))


def probe_speeds(model: ModelConfig, train: TrainConfig, *, given: set[str], train_chars: int,
                 device: torch.device) -> Speeds:
    """Time what steps 1 and 2 compare, for a time budget only: the reference model in each precision,
    then narrower batches, in the precision and from the rows that ``decide``'s own steps choose."""
    if train.precision == Precision.BF16:  # a device that cannot run it says so before a probe steps in it
        check_bf16(device)
    if not needs_speed(train):
        return Speeds()
    reference = reference_of(model, given)
    train = choose_rows(train, {}, given, train_chars)  # the rows before any width is timed
    seconds = min(PROBE_SECONDS, train.time_budget / 100)  # at most 1% of the budget per probe
    tried = ([train.precision] if "precision" in given else
             [Precision.FP32, *([Precision.BF16] if _has_fast_bf16(device) else [])])
    speeds = probe_variants(reference, [replace(train, precision=p) for p in tried], device, seconds)
    by_precision = {str(p): speed for p, speed in zip(tried, speeds, strict=True)}
    if "batch_size" in given:
        return Speeds(by_precision)
    train = replace(train, precision=choose_precision(train, by_precision, given))
    # The widest is timed again, in turns with the narrower: their ratio is what step 2 compares.
    widths = [train.batch_size, *(r for r in WIDTHS if r < train.batch_size)]
    speeds = probe_variants(reference, [replace(train, batch_size=r) for r in widths], device, seconds)
    return Speeds(by_precision, dict(zip(widths, speeds, strict=True)))


def probe_chars_per_s(model: ModelConfig, train: TrainConfig, device: torch.device,
                      seconds: float = PROBE_SECONDS) -> float:
    """Training characters per second of ``model`` on random ids: warm-up steps, then steps for about
    ``seconds``, at the median step's speed."""
    return probe_variants(model, [train], device, seconds)[0]


def probe_variants(model: ModelConfig, variants: list[TrainConfig], device: torch.device,
                   seconds: float = PROBE_SECONDS) -> list[float]:
    """Training characters per second of ``model`` under each of ``variants`` (which differ in precision
    or rows), timed in turns for about ``seconds`` each; see ``time_in_turns``."""
    rng_state = torch.get_rng_state()  # the run's seeded draws must not depend on the probe
    try:
        net = CharLSTM(model).to(device).train()
        opt = make_optimizer(net, variants[0])  # lr and decay only: the same for every variant
        steps = [_training_step(net, opt, train, device) for train in variants]
        times = time_in_turns(steps, seconds)
        return [steady_chars_per_s(t, train.batch_size * train.seq_len)
                for t, train in zip(times, variants, strict=True)]
    finally:
        torch.set_rng_state(rng_state)


def time_in_turns(steps: list[Callable[[], float]], seconds: float) -> list[list[float]]:
    """Each step's timings: ``WARMUP_STEPS`` untimed turns, then turns of one step each until they took
    about ``seconds`` per step function and each was timed ``MIN_TIMED_STEPS`` times. A machine whose
    speed drifts (another process starting, the CPU's clock) slows every variant alike in turns, where
    one timed after another would take the drift for a difference between them."""
    for _ in range(WARMUP_STEPS):
        for step in steps:
            step()
    times: list[list[float]] = [[] for _ in steps]
    while sum(map(sum, times)) < seconds * len(steps) or min(map(len, times)) < MIN_TIMED_STEPS:
        for step, timed in zip(steps, times, strict=True):
            timed.append(step())
    return times


def _training_step(net: CharLSTM, opt: torch.optim.Optimizer, train: TrainConfig,
                   device: torch.device) -> Callable[[], float]:
    """A function that runs one training step of ``net`` on random ids shaped by ``train`` and returns
    its seconds."""
    ids = torch.randint(0, net.config.vocab_size, (train.batch_size, train.seq_len + 1), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=train.precision == Precision.BF16)

    def step() -> float:
        start = time.perf_counter()
        with autocast:
            logits, _ = net(ids[:, :-1])  # (B, T, V)
        loss = char_loss(logits, ids[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    return step


def steady_chars_per_s(step_seconds: list[float], chars_per_step: int) -> float:
    """Characters/s at the median of ``step_seconds``: one step slowed by the machine does not move it."""
    return chars_per_step / statistics.median(step_seconds)


def _has_fast_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
        except OSError:
            return False
        return ("amx_bf16" in flags or "avx512_bf16" in flags) and bf16_lstm_runs(str(device))
    return False
