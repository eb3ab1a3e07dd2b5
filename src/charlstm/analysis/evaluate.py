"""How well a model predicts text: loss in nats/char, bits/char, perplexity."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from charlstm.analysis.dynamic import DynamicConfig, DynamicResult, dynamic_evaluate
from charlstm.data.prepared import META_FILE, open_prepared
from charlstm.data.sources import load_text
from charlstm.errors import ConfigError, CorpusError
from charlstm.model.loss import EvalResult
from charlstm.model.runtime import resolve_device
from charlstm.runs.folder import DATA_DIR, data_dir
from charlstm.runs.loading import LoadedModel, load_model


def score_run(
    run: Path, texts: list[Path] | None = None, *, split: str = "val", unknown: str = "error",
    replacement: str | None = None, device: str = "cpu", max_chars: int | None = None, progress: bool = False,
) -> EvalResult:
    """Score a run's best checkpoint on its held-out ``split`` or on the given text files.

    Every character is scored unless ``max_chars`` caps it (the text's first ones).
    """
    loaded = load_model(Path(run), resolve_device(device))
    ids = _ids_to_score(loaded, run, texts, split, unknown, replacement)
    return loaded.framing.evaluate(loaded.model, ids, device=loaded.model.head.weight.device,
                                   max_chars=max_chars, progress=progress)


def dynamic_score_run(
    run: Path, texts: list[Path] | None = None, *, config: DynamicConfig | None = None, split: str = "val",
    unknown: str = "error", replacement: str | None = None, device: str = "cpu", progress: bool = False,
    max_chars: int | None = None,
) -> DynamicResult:
    """Static and dynamic scores of a stream run's best checkpoint; the run's files are only read."""
    loaded = load_model(Path(run), resolve_device(device))
    if not loaded.framing.carries_state:
        raise ConfigError("dynamic evaluation reads the text as one stream: it needs a stream-framed model, "
                          f"and {run} is {loaded.framing.name}-framed")
    ids = _ids_to_score(loaded, run, texts, split, unknown, replacement)
    if max_chars is not None:
        ids = ids[: max_chars + 1]  # max_chars predictions
    return dynamic_evaluate(loaded.model, ids, config, device=loaded.model.head.weight.device,
                            progress=progress)


def _ids_to_score(loaded: LoadedModel, run: Path, texts: list[Path] | None, split: str, unknown: str,
                  replacement: str | None) -> np.ndarray:
    if texts:
        text = load_text(texts, loaded.meta.corpus_config)
        return loaded.vocab.encode(text, unknown, replacement)
    if split not in ("val", "test"):
        raise ConfigError(f"split must be val or test, not {split!r}")
    run_dir = loaded.run_dir
    # Without config.json (which names the run's data) RUN/data is still the run's if it is
    # the very text the checkpoint was trained on: the content hash says so.
    folder = data_dir(run_dir) if run_dir is not None else loaded.path.parent / DATA_DIR
    if not (folder / META_FILE).is_file():
        raise CorpusError(f"{run}: no data folder beside the checkpoint; give a text to score",
                          hint="charlstm eval RUN TEXT")
    data = open_prepared(folder)
    if loaded.meta.data_sha256 is not None and data.sha256 != loaded.meta.data_sha256:
        raise CorpusError(f"{folder}: not the text this checkpoint was trained on; give a text to score",
                          hint="charlstm eval RUN TEXT")
    ids = data.split(split)
    if len(ids) == 0:
        raise CorpusError(f"{run}: this run has no {split} split (its preset holds no text out); "
                          "give a text to score", hint="charlstm eval RUN TEXT")
    return ids
