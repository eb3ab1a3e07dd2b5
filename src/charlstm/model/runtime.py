"""One seed for Python, NumPy and torch; the device a run uses and what it can run."""

from __future__ import annotations

import functools
import os
import random

import numpy as np
import torch

from charlstm.errors import ConfigError


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; a named device must exist here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not (kind == "cuda" and index.isdigit())):
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name}: no CUDA device is available (or torch is a CPU build)")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise ConfigError(f"device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                          f"numbered from 0")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device mps: Apple's MPS backend is not available")
    return torch.device(name)


def check_bf16(device: torch.device) -> None:
    """Refuse ``--precision bf16`` on a device that cannot run an LSTM step in bfloat16."""
    if not bf16_lstm_runs(str(device)):
        raise ConfigError(
            f"--precision bf16: this {device.type.upper()} cannot run the LSTM in bfloat16 "
            "(on a CPU oneDNN needs AVX-512 for it); use --precision fp32"
        )


@functools.cache
def bf16_lstm_runs(device: str) -> bool:
    """Whether a tiny LSTM steps forward and back under bf16 autocast here (tried once per device)."""
    lstm = torch.nn.LSTM(4, 4).to(device)
    try:
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            out, _ = lstm(torch.zeros(2, 1, 4, device=device))  # (T, B, H)
        out.float().sum().backward()
    except RuntimeError:  # oneDNN: "could not create a primitive descriptor" on CPUs without AVX-512
        return False
    return True


def physical_memory() -> int | None:
    """Bytes of RAM on this machine, or None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
