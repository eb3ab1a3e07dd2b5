"""Short samples in the training log every ``sample_every`` steps, as the Keras example prints."""

from __future__ import annotations

import logging

import numpy as np
import torch

from charlstm.config.sample import SampleConfig
from charlstm.data.vocab import Vocab
from charlstm.framing import Framing
from charlstm.generation.generators import continue_ids
from charlstm.generation.sampling import SAMPLE_TEMPERATURES, make_generator
from charlstm.model.network import CharLSTM
from charlstm.training.events import Callbacks, SampleLogged, StepEnd

log = logging.getLogger(__name__)


class SampleLogger:
    """Logs samples at a few temperatures, from the same prompt each time, to watch progress."""

    def __init__(self, model: CharLSTM, framing: Framing, text_ids: np.ndarray, vocab: Vocab, *,
                 every: int, length: int):
        """``text_ids``: held-out (or training) text whose start is every sample's prompt."""
        self.model, self.framing, self.vocab, self.every, self.length = model, framing, vocab, every, length
        self.prompt = torch.from_numpy(np.asarray(text_ids[: framing.sample_prompt_length], dtype=np.int64))
        self.callbacks: Callbacks | None = None

    def subscribe(self, callbacks: Callbacks) -> None:
        self.callbacks = callbacks
        callbacks.on(StepEnd, self._maybe_sample)

    def _maybe_sample(self, event: StepEnd) -> None:
        if event.step % self.every == 0:
            self.log_samples(event.step)

    def log_samples(self, step: int) -> None:
        prompt_text = self.vocab.decode(self.prompt.tolist())
        device = self.model.head.weight.device
        for temperature in SAMPLE_TEMPERATURES:
            config = SampleConfig(length=self.length, temperature=temperature, seed=0)
            generator, _ = make_generator(0, device)
            steps = continue_ids(self.model, self.framing, self.prompt, config, generator)
            text = prompt_text + self.vocab.decode(int(s[0]) for s in steps)
            log.info("sample at step %d, temperature %.1f:\n%s\n", step, temperature, text)
            if self.callbacks is not None:
                self.callbacks.emit(SampleLogged(step, temperature, text))
