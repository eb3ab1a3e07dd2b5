"""A static web site that generates in the browser: ``charlstm export RUN --format web``.

    SITE/index.html   the page: prompt, sampling settings, Generate and Stop, streamed text
    SITE/model.js     the weights, base64 in a script that sets ``globalThis.CHARLSTM_MODEL``
    SITE/runtime.js   a dependency-free LSTM step and sampler; sets ``globalThis.charlstm``

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
from charlstm.errors import ConfigError
from charlstm.framing import StreamFraming
from charlstm.interop.hf import held_out_bits_per_char
from charlstm.runs.folder import check_outside_runs
from charlstm.runs.loading import LoadedModel

WEIGHT_TYPES = {"f32": np.float32, "f16": np.float16}  # f16 halves the folder; JS widens it back
PAGE_FILES = ("index.html", "runtime.js")
MODEL_FILE = "model.js"


def check_web_supported(loaded: LoadedModel) -> None:
    """Refuse what runtime.js does not implement, naming it: it knows one model family only."""
    config = loaded.model.config
    unsupported = []
    # runtime.js does what StreamFraming's reader does (the prompt once from a zero state, then one
    # step a character): the exact type, so a framing derived from it that reads otherwise is refused.
    if type(loaded.framing) is not StreamFraming:
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


def model_spec(loaded: LoadedModel, weights: str = "f32") -> dict[str, Any]:
    """What model.js holds: the vocabulary, sizes, figures for the page, and every tensor."""
    if weights not in WEIGHT_TYPES:
        raise ConfigError(f"weights must be one of {', '.join(WEIGHT_TYPES)}, not {weights!r}")
    model, config = loaded.model, loaded.model.config
    dtype = np.dtype(WEIGHT_TYPES[weights]).newbyteorder("<")  # JS typed arrays read little-endian here
    tensors = {}
    for name, tensor in model.state_dict().items():
        array = tensor.detach().float().cpu().numpy().astype(dtype)
        data = base64.b64encode(array.tobytes()).decode("ascii")
        tensors[name] = {"shape": list(array.shape), "data": data}
    corpus = loaded.meta.corpus_config
    bits = held_out_bits_per_char(loaded)
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
        "default_prompt": loaded.framing.default_prompt(loaded.vocab, loaded.training_ids,
                                                        np.random.default_rng(0)),
        "tensors": tensors,
    }


def _model_name(loaded: LoadedModel) -> str:
    run_dir = loaded.run_dir
    return (run_dir or loaded.path).resolve().name


def export_web(loaded: LoadedModel, out: Path, *, force: bool = False, weights: str = "f32") -> Path:
    """Write the site into ``out`` (a new or empty folder; a non-empty one only with ``force``)."""
    check_web_supported(loaded)
    check_outside_runs(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder; a web export is a folder: name a new one")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"{out} is not empty; choose a new or empty folder, or set force to write over it",
                          hint="--force, or another --out")
    spec = model_spec(loaded, weights)
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
