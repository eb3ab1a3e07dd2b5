"""A static web site that generates in the browser: ``charlstm export RUN --format web``.

    SITE/index.html   the page: prompt, sampling settings, Generate and Stop, streamed text
    SITE/model.js     the weights, base64 in a script that sets ``globalThis.CHARLSTM_MODEL``
    SITE/runtime.js   a dependency-free LSTM step and sampler; sets ``globalThis.charlstm``

A model of a list (items) ships its labels, their training counts and start symbols, and the
page makes whole items; the training list itself only with ``include_list`` (a list may be
private), which lets the page mark each item new or in the list.

The weights sit in a script, not a JSON or binary file beside it, because a page opened from
disk (file://) may load scripts but may not fetch() its neighbours. Nothing in the folder
refers outside it, so it works offline and from any static host. runtime.js runs in Node too,
which is how the tests check its logits against PyTorch's.
"""

from __future__ import annotations

import base64
import html
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from charlstm.config.choices import Cell, GateActivation, InputEncoding
from charlstm.errors import ConfigError, CorpusError
from charlstm.framing import StreamFraming
from charlstm.framing.items import ItemFraming
from charlstm.generation.items import training_items
from charlstm.interop.hf import held_out_bits_per_char
from charlstm.runs.folder import check_outside_runs
from charlstm.runs.loading import LoadedModel

# f16 halves the folder (JS widens it back) and keeps greedy text. int8 with a scale per row of each
# matrix would quarter it, but changed a 2 x 256 Alice model's greedy text from its second character
# on (f16: all 300 the same), so it is not offered.
WEIGHT_TYPES = ("f32", "f16")
PAGE_FILES = ("index.html", "runtime.js")
MODEL_FILE = "model.js"


def check_web_supported(loaded: LoadedModel) -> None:
    """Refuse what runtime.js does not implement, naming it: it knows one model family only."""
    config = loaded.model.config
    unsupported = []
    # runtime.js does what StreamFraming's reader does (the prompt once from a zero state, then one
    # step a character), as ItemFraming's does from an item's start: the exact types, so a framing
    # derived from them that reads otherwise is refused.
    if type(loaded.framing) not in (StreamFraming, ItemFraming):
        unsupported.append(f"framing {loaded.framing.name} (only stream models read a prompt once "
                           "and then step one character at a time)")
    if config.cell != Cell.LSTM:
        unsupported.append(f"cell {config.cell}")
    if config.gate_activation != GateActivation.SIGMOID:
        unsupported.append(f"gate_activation {config.gate_activation}")
    if config.input_encoding != InputEncoding.EMBEDDING:
        unsupported.append(f"input_encoding {config.input_encoding}")
    if unsupported:
        raise ConfigError("the web export runs stream LSTM models with sigmoid gates and an embedding "
                          f"only; this model has {'; '.join(unsupported)}")


def model_spec(loaded: LoadedModel, weights: str = "f32", include_list: bool = False) -> dict[str, Any]:
    """What model.js holds: the vocabulary, sizes, figures for the page, and every tensor; for a
    model of a list its labels (and with ``include_list`` the training list)."""
    if weights not in WEIGHT_TYPES:
        raise ConfigError(f"weights must be one of {', '.join(WEIGHT_TYPES)}, not {weights!r}")
    model, config = loaded.model, loaded.model.config
    tensors = {name: _encode(tensor.detach().float().cpu().numpy(), weights)
               for name, tensor in model.state_dict().items()}
    corpus = loaded.meta.corpus_config
    bits = held_out_bits_per_char(loaded)
    info = loaded.meta.items
    if include_list and info is None:
        raise ConfigError("include_list ships a list model's training items; this model was trained on "
                          "running text")
    return {
        "format": 1,
        "name": _model_name(loaded),
        "dtype": weights,
        "vocab": loaded.vocab.to_list(),
        "num_layers": config.num_layers,
        "hidden_size": config.hidden_size,
        "embedding_size": config.embedding_size,
        "parameters": model.num_parameters(trainable_only=False),
        "bits_per_char": bits if bits is not None and math.isfinite(bits) else None,
        "lowercase": bool(corpus.lowercase),
        "normalize": bool(corpus.normalize),
        "default_prompt": "" if info else loaded.framing.default_prompt(
            loaded.vocab, loaded.training_ids, np.random.default_rng(0)),
        "items": None if info is None else {
            "labels": info.labels, "label_counts": list(info.label_counts) or [1],
            "starts": [info.symbol(label) for label in info.labels] or [info.symbol(None)]},
        "list": _training_list(loaded) if include_list else None,
        "tensors": tensors,
    }


def _training_list(loaded: LoadedModel) -> list[str]:
    """The training list's items, sorted (the page only asks whether a text is among them)."""
    known = training_items(loaded)
    if known is None:
        raise CorpusError("include_list needs the training list: the checkpoint is not in its run folder "
                          "with its data")
    return sorted(known)


def _base64(array: np.ndarray, dtype: str) -> str:
    # JS typed arrays read the platform's order, little-endian on every browser's machine.
    return base64.b64encode(array.astype(np.dtype(dtype).newbyteorder("<")).tobytes()).decode("ascii")


def _encode(array: np.ndarray, weights: str) -> dict[str, Any]:
    """One tensor for model.js, in ``weights``' type."""
    half = weights == "f16"
    return {"shape": list(array.shape), "data": _base64(array, "f2" if half else "f4"),
            "dtype": "f16" if half else "f32"}


def _model_name(loaded: LoadedModel) -> str:
    run_dir = loaded.run_dir
    return (run_dir or loaded.path).resolve().name


def export_web(loaded: LoadedModel, out: Path, *, force: bool = False, weights: str = "f32",
               include_list: bool = False) -> Path:
    """Write the site into ``out`` (a new or empty folder; a non-empty one only with ``force``)."""
    check_web_supported(loaded)
    check_outside_runs(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder; a web export is a folder: name a new one")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"{out} is not empty; choose a new or empty folder, or set force to write over it",
                          hint="--force, or another --out")
    spec = model_spec(loaded, weights, include_list)
    try:
        out.mkdir(parents=True, exist_ok=True)
        # ensure_ascii: the script is then plain ASCII, whatever charset the browser guesses
        (out / MODEL_FILE).write_text(f"globalThis.CHARLSTM_MODEL = {json.dumps(spec)};\n", encoding="ascii")
        template = resources.files("charlstm.interop").joinpath("web")
        for name in PAGE_FILES:
            text = template.joinpath(name).read_text(encoding="utf-8")
            if name == "index.html":
                text = text.replace("{{TITLE}}", html.escape(spec["name"]))
            (out / name).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write the site ({exc.strerror or exc})") from None
    return out


def folder_size(path: Path) -> int:
    """Bytes in the files under ``path``: what a static host serves."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
