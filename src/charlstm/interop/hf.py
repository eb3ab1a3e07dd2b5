"""A model folder in the Hugging Face Hub layout, ready for the user's own upload.

    DIR/config.json        model config, framing, seq_len, charlstm version; library_name "charlstm"
    DIR/model.safetensors  a self-contained charlstm checkpoint (weights, configs, vocabulary)
    DIR/vocab.json         {character: id}, for tools that do not read the checkpoint's header
    DIR/README.md          a model card: YAML front matter, then how to generate and how to upload

charlstm reads the folder back (``runs.loading.hf_weights``) from model.safetensors alone; the
other files describe it to people and to the Hub (where they contradict it, loading warns and
keeps to model.safetensors). Nothing here touches the network.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from charlstm import __version__
from charlstm.config.choices import CheckpointMetric
from charlstm.errors import ConfigError
from charlstm.model.loss import bits_per_char
from charlstm.runs.checkpoint import save_checkpoint
from charlstm.runs.folder import read_record
from charlstm.runs.loading import HF_CONFIG, HF_LIBRARY, HF_VOCAB, HF_WEIGHTS, LoadedModel

CARD_FILE = "README.md"
FILES = (HF_CONFIG, HF_WEIGHTS, HF_VOCAB, CARD_FILE)
TAGS = ("charlstm", "character-level", "lstm", "text-generation")


def export_hf(loaded: LoadedModel, out: Path, *, force: bool = False) -> Path:
    """Write the four files into ``out``; a non-empty ``out`` only with ``force``. Returns ``out``.

    ``force`` writes over the four files and leaves anything else in the folder alone.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder; choose a folder to export into")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"{out} is not empty; choose a new or empty folder, or set force to write over it",
                          hint="--force, or another --out")
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / HF_WEIGHTS, model=loaded.model, meta=loaded.meta)  # no training state
    _write_json(out / HF_CONFIG, hf_config(loaded))
    _write_json(out / HF_VOCAB, {ch: i for i, ch in enumerate(loaded.vocab.to_list())})
    (out / CARD_FILE).write_text(model_card(loaded, out.resolve().name), encoding="utf-8")
    return out


def hf_config(loaded: LoadedModel) -> dict[str, Any]:
    """config.json: flat, as the Hub expects, with the model config's fields at the top level."""
    return {
        "library_name": HF_LIBRARY, "model_type": HF_LIBRARY, "charlstm_version": __version__,
        "checkpoint_format": loaded.meta.format_version, **asdict(loaded.model.config),
        "framing": str(loaded.framing.name), "seq_len": loaded.seq_len,
    }


def _write_json(path: Path, value: Any) -> None:
    # ensure_ascii off: a vocabulary of accented letters stays readable in the file
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def held_out_bits_per_char(loaded: LoadedModel) -> float | None:
    """The checkpoint's own held-out bits/char: its evaluation record, else the val_loss it was kept for."""
    value = loaded.meta.last_eval.get("val_bits_per_char")
    if isinstance(value, int | float):
        return float(value)
    metric = loaded.meta.metric
    if metric is None or metric.name != CheckpointMetric.VAL_LOSS:
        return None
    return bits_per_char(metric.value)


def corpus_names(loaded: LoadedModel) -> list[str]:
    """The training texts' file names, from the run folder's record; none away from it."""
    run_dir = loaded.run_dir
    return [] if run_dir is None else [Path(s).name for s in read_record(run_dir).sources]


def _quoted(text: str) -> str:
    """A YAML scalar that cannot be misread: JSON's double-quoted strings are valid YAML."""
    return json.dumps(text, ensure_ascii=False)


def front_matter(loaded: LoadedModel, name: str) -> list[str]:
    """The card's YAML lines, between the two ``---``: the Hub reads these, not the prose."""
    lines = [
        "---",
        "library_name: charlstm",
        # "other" is a valid Hub value that asks for a choice: the license is the user's to set.
        "license: other  # FILL IN: the license you release this model under, e.g. mit or cc-by-4.0",
        "pipeline_tag: text-generation",
        "tags:",
        *(f"- {tag}" for tag in dict.fromkeys((*TAGS, str(loaded.model.config.cell)))),  # gru, rnn
    ]
    bits, corpus = held_out_bits_per_char(loaded), ", ".join(corpus_names(loaded))
    if bits is not None:
        dataset = corpus or "held-out text"
        lines += [
            "model-index:",
            f"- name: {_quoted(name)}",
            "  results:",
            "  - task:",
            "      type: text-generation",
            "    dataset:",
            f"      name: {_quoted(dataset + ' (held-out split)')}",
            f"      type: {_quoted(Path(dataset).stem if corpus else 'text')}",
            "    metrics:",
            "    - type: bits_per_char",
            f"      value: {round(bits, 4)}",
            "      name: held-out bits/char",
        ]
    return [*lines, "---"]


def example_prompt(loaded: LoadedModel) -> str:
    """A prompt for the card's examples that the vocabulary encodes (a lowercased text has no 'T')."""
    chars = loaded.vocab.to_list()
    for prompt in ("The ", "the ", "a "):
        if set(prompt) <= set(chars):
            return prompt
    return next((ch for ch in chars if ch.isprintable()), chars[0])


def model_card(loaded: LoadedModel, name: str) -> str:
    """README.md: front matter, what the model is, how to generate from it and how to upload it."""
    config, meta = loaded.model.config, loaded.meta
    bits, corpus = held_out_bits_per_char(loaded), ", ".join(corpus_names(loaded)) or "not recorded"
    score = "not measured (no held-out split)" if bits is None else f"{bits:.4f}"
    parameters = loaded.model.num_parameters()  # trainable ones, as `charlstm info` counts
    prompt = _quoted(example_prompt(loaded))
    body = f"""
# {name}

A character-level language model trained with charlstm, a character-level LSTM trainer:
{config.num_layers} x {config.hidden_size} {config.cell} layers, {config.input_encoding} input,
{len(loaded.vocab)} characters, {parameters:,} parameters, {loaded.framing.name} framing with
seq_len {loaded.seq_len}, trained for {meta.progress.step} steps.

- Training text: {corpus}
- Held-out bits per character: {score}
- License: not set yet; fill in `license:` above before you publish.

`model.safetensors` is a self-contained charlstm checkpoint: weights, configs and the
vocabulary are in its header. `vocab.json` maps each character to its id for other tools;
`config.json` describes the model.

## Generate

```
charlstm generate path/to/{name} --prompt {prompt} --length 300 --seed 1
charlstm eval path/to/{name} some_text.txt     # bits per character on a text
charlstm serve path/to/{name}                  # HTTP API and a page, on 127.0.0.1
```

```python
import charlstm

model = charlstm.load_model("path/to/{name}")
print(charlstm.generate_text(model, {prompt}, length=300, seed=1)[0])
```

## Upload to the Hugging Face Hub

charlstm uploads nothing. With your own `huggingface_hub` login (`huggingface-cli login`):

```
huggingface-cli upload YOUR_NAME/{name} path/to/{name} .
```

or from Python: `HfApi().upload_folder(folder_path="path/to/{name}", repo_id="YOUR_NAME/{name}")`.
To use it elsewhere, `huggingface-cli download YOUR_NAME/{name} --local-dir {name}`, then
`charlstm generate {name}`.
"""
    return "\n".join(front_matter(loaded, name)) + "\n" + body
