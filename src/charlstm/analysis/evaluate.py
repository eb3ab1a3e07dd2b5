"""How well a model predicts text: loss in nats/char, bits/char, perplexity."""

from __future__ import annotations

from pathlib import Path

from charlstm.data.prepared import open_prepared
from charlstm.data.sources import load_text
from charlstm.errors import ConfigError, CorpusError
from charlstm.model.loss import EvalResult
from charlstm.model.runtime import resolve_device
from charlstm.runs.folder import data_dir
from charlstm.runs.loading import load_model


def score_run(
    run: Path, texts: list[Path] | None = None, *, split: str = "val", unknown: str = "error",
    replacement: str | None = None, device: str = "cpu",
) -> EvalResult:
    """Score a run's best checkpoint on its held-out ``split`` or on the given text files."""
    loaded = load_model(Path(run), resolve_device(device))
    if texts:
        text = load_text(texts, loaded.meta.corpus_config)
        ids = loaded.vocab.encode(text, unknown, replacement)
    else:
        if split not in ("val", "test"):
            raise ConfigError(f"split must be val or test, not {split!r}")
        run_dir = loaded.run_dir
        if run_dir is None or not data_dir(run_dir).is_dir():
            raise CorpusError(f"{run}: no data folder beside the checkpoint; give a text to score",
                              hint="charlstm eval RUN TEXT")
        ids = open_prepared(data_dir(run_dir)).split(split)
        if len(ids) == 0:
            raise CorpusError(f"{run}: this run has no {split} split (its preset holds no text out); "
                              "give a text to score", hint="charlstm eval RUN TEXT")
    return loaded.framing.evaluate(loaded.model, ids, device=loaded.model.head.weight.device)
