"""Helpers shared by the generate, evaluate, report and CLI tests: small texts, tiny models, tiny runs.

Plain functions, not fixtures, so each test file scopes its own fixtures.
"""

from __future__ import annotations

import builtins
import logging
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner, Result

from charlstm.cli.app import app
from charlstm.config.model import ModelConfig
from charlstm.config.sample import SampleConfig
from charlstm.framing import StreamFraming, WindowFraming
from charlstm.generation.generators import continue_ids
from charlstm.model.network import CharLSTM
from charlstm.training import session as api

# Tiny settings: every run trains in well under a second on a CPU.
TINY_MODEL = {"hidden_size": 16, "num_layers": 1, "embedding_size": 8, "dropout": 0.0}
TINY_STREAM = {**TINY_MODEL, "seq_len": 16, "batch_size": 4, "eval_every": 3, "epochs": None}
TINY_WINDOW = {"hidden_size": 8, "seq_len": 10, "batch_size": 16, "epochs": 1}

# No '-' in the texts: the CLI's multi-sample output is split on '--- sample N ---' lines.
_SENTENCES = (
    "the quick brown fox jumps over a lazy dog while Alice reads her book by the river, "
    "and the White Rabbit runs past. Why? Nobody knows; she follows it down the hole."
)
_WORDS = _SENTENCES.split()


def sample_text(words: int = 600, seed: int = 0) -> str:
    """Pseudo-English of about ``6 * words`` characters, with line breaks, deterministic."""
    rng = random.Random(seed)
    lines, line = [], []
    for _ in range(words):
        line.append(rng.choice(_WORDS))
        if len(line) == 12:
            lines.append(" ".join(line))
            line = []
    lines.append(" ".join(line))
    return "\n".join(lines) + "\n"


def write_text(path: Path, words: int = 600, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sample_text(words, seed), encoding="utf-8")
    return path


def make_unreadable(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``path`` unreadable: chmod 000, or, as root (whom chmod does not stop), an ``open``
    that refuses it as the system would."""
    if os.geteuid() != 0:
        path.chmod(0)
        return
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):
        if isinstance(file, str | os.PathLike) and Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)


def tiny_model(
    vocab_size: int, *, cell: str = "lstm", num_layers: int = 2, seed: int = 0, scale: float = 1.0
) -> CharLSTM:
    """A random CharLSTM in eval mode (dropout configured, so eval mode matters).

    ``scale`` multiplies every weight: at PyTorch's small initial weights greedy decoding
    repeats one character, which would make sequence comparisons prove little.
    """
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=vocab_size, cell=cell, hidden_size=16, num_layers=num_layers,
                         embedding_size=8, dropout=0.3)
    model = CharLSTM(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(scale)
    return model


def stream_ids(model: CharLSTM, prompt: torch.Tensor, config: SampleConfig,
               generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Generation as a stream model reads: the prompt once, then one step per character."""
    return continue_ids(model, StreamFraming(seq_len=1), prompt, config, generator)


def window_ids(model: CharLSTM, prompt: torch.Tensor, seq_len: int, config: SampleConfig,
               generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Generation as a window model reads: the last ``seq_len`` ids re-read for every step."""
    return continue_ids(model, WindowFraming(seq_len), prompt, config, generator)


def train_stream_run(run_dir: Path, text: Path, **overrides) -> Path:
    """A default-preset (stream) run trained for a few steps, with a held-out split."""
    api.train([text], out_dir=run_dir, preset="default", **{**TINY_STREAM, "max_steps": 6, **overrides})
    return run_dir


def train_window_run(run_dir: Path, text: Path, **overrides) -> Path:
    """A tutorial-preset (window) run: no held-out split, Keras-style checkpoint names."""
    api.train([text], out_dir=run_dir, preset="tutorial", **{**TINY_WINDOW, **overrides})
    return run_dir


def invoke(*args: object, stdin: bytes | str | None = None) -> Result:
    """Run the CLI in-process; an exception escaping it (a traceback for the user) fails the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        result = CliRunner().invoke(app, [str(a) for a in args], input=stdin)
    finally:
        # The CLI configures logging onto the runner's stderr, which closes after the call.
        root.handlers[:] = handlers
        root.setLevel(level)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"the CLI let {result.exception!r} escape") from result.exception
    assert "Traceback" not in result.output
    return result
