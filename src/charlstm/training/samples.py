"""Short samples in the training log every ``sample_every`` steps, as the Keras example prints."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import torch

from charlstm.config.sample import SampleConfig
from charlstm.generation.generators import continue_ids
from charlstm.generation.sampling import SAMPLE_TEMPERATURES, make_generator
from charlstm.training.events import SampleLogged, StepEnd

if TYPE_CHECKING:
    from charlstm.training.trainer import Trainer

log = logging.getLogger(__name__)


class SampleLogger:
    """Logs samples at a few temperatures, from the same prompt each time, to watch progress."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        if trainer.config.sample_every and trainer.dist.is_main:
            trainer.callbacks.on(StepEnd, self._maybe_sample)

    def _maybe_sample(self, event: StepEnd) -> None:
        if event.step % self.trainer.config.sample_every == 0:
            self.log_samples()

    def log_samples(self) -> None:
        t = self.trainer
        framing = t.framing
        source = t.val_ids if len(t.val_ids) > t.config.seq_len else t.data.split("train")
        prompt = torch.from_numpy(np.asarray(source[: framing.sample_prompt_length], dtype=np.int64))
        vocab = t.data.vocab
        prompt_text = vocab.decode(prompt.tolist())
        for temperature in SAMPLE_TEMPERATURES:
            config = SampleConfig(length=t.config.sample_length, temperature=temperature, seed=0)
            generator, _ = make_generator(0, t.device)
            steps = continue_ids(t.model, framing, prompt, config, generator)
            text = prompt_text + vocab.decode(int(s[0]) for s in steps)
            log.info("sample at step %d, temperature %.1f:\n%s\n", t.progress.step, temperature, text)
            t.callbacks.emit(SampleLogged(t.progress.step, temperature, text))
