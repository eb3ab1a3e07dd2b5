"""The prompt as a model reads it: cleaned as its corpus was, unknown characters handled, as ids."""

from __future__ import annotations

import numpy as np

from charlstm.config.sample import SampleConfig
from charlstm.data.cleaning import clean_prompt
from charlstm.errors import CorpusError
from charlstm.runs.loading import LoadedModel


def prompt_ids(loaded: LoadedModel, prompt: str | None, config: SampleConfig,
               seed: int) -> tuple[str, np.ndarray]:
    """The prompt as the model reads it (cleaned, unknown characters handled) and its (P,) ids.

    No prompt: the framing's default start, drawn with ``seed``.
    """
    if prompt:
        prompt = clean_prompt(prompt, loaded.meta.corpus_config)
    else:
        prompt = loaded.framing.default_prompt(loaded.vocab, loaded.training_ids, np.random.default_rng(seed))
    ids = loaded.vocab.encode(prompt, config.unknown, config.replacement)
    if len(ids) == 0:
        raise CorpusError("the prompt is empty once unknown characters are dropped")
    return loaded.vocab.decode(ids), ids
