"""Import the Keras tutorial's own HDF5 checkpoints into charlstm runs.

Reads the Keras 2 whole-model HDF5 layout with h5py (no TensorFlow): the
architecture from the ``model_config`` attribute, weights from
``model_weights/<layer>/<layer>/<name>:0``. Keras's LSTM kernel is (I, 4H) with
gates i, f, c, o, the same order as PyTorch's i, f, g, o, so a transpose maps
it; Keras's single bias becomes ``bias_ih`` and ``bias_hh`` stays zero.

The vocabulary is not in the file: it is rebuilt from the text the model was
trained on, as the tutorial's code did (the whole file, lowercased, sorted set
of its characters; no Gutenberg stripping, no newline changes). Python 2 read
the file as bytes (the 2017 tutorial: BOM bytes and ``'\\r'`` are symbols);
Python 3 reads UTF-8 text with universal newlines. Whichever reading gives the
vocabulary size the weights expect is used, and recorded as the run's cleaning; its
encoding describes the tutorial's file only: a fine-tune reads its new text as its own
``encoding`` setting says (training.finetune).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from charlstm import presets
from charlstm.config.choices import CheckpointMetric, GateActivation
from charlstm.config.corpus import CorpusConfig
from charlstm.config.model import ModelConfig
from charlstm.data.cleaning import normalize_newlines
from charlstm.data.vocab import Vocab
from charlstm.data.writer import write_prepared
from charlstm.errors import CheckpointError, ConfigError, CorpusError
from charlstm.model.network import CharLSTM
from charlstm.runs import folder as runs
from charlstm.runs.checkpoint import SUFFIX, save_checkpoint
from charlstm.runs.meta import CheckpointMeta, Metric, Progress

log = logging.getLogger(__name__)

_NAME = re.compile(r"weights-improvement-(\d+)-(\d+\.\d+)")


def _attr(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_keras_file(path: Path) -> tuple[list[dict], dict[str, dict[str, Any]], dict[str, str]]:
    """(layer configs, weights by layer name, file attributes) of a Keras 2 HDF5 model file."""
    try:
        import h5py
    except ImportError:
        raise ConfigError("reading Keras files needs h5py: pip install 'charlstm[keras]'") from None

    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _attr(v) for k, v in f.attrs.items()}
            if "model_config" not in attrs or "model_weights" not in f:
                raise CheckpointError(
                    f"{path}: not a whole-model Keras file (no model_config); the tutorial's "
                    "ModelCheckpoint files are"
                )
            config = json.loads(attrs["model_config"])
            group = f["model_weights"]
            weights: dict[str, dict[str, Any]] = {}
            for layer in (_attr(n) for n in group.attrs["layer_names"]):
                names = [_attr(n) for n in group[layer].attrs["weight_names"]]
                # "lstm_1/kernel:0" -> "kernel"
                weights[layer] = {n.split("/")[-1].split(":")[0]: group[layer][n][()] for n in names}
    except OSError as exc:
        raise CheckpointError(f"{path}: not a readable HDF5 file ({exc})") from None
    layers = config["config"]
    if isinstance(layers, dict):  # Keras 2.2+ nests the list under "layers"
        layers = layers["layers"]
    return layers, weights, attrs


def model_config_from_layers(layers: list[dict], path: Path) -> tuple[ModelConfig, int]:
    """The charlstm architecture (without vocab size) and window length of a tutorial network."""
    kinds = [layer["class_name"] for layer in layers]
    lstms = [layer["config"] for layer in layers if layer["class_name"] == "LSTM"]
    dropouts = [layer["config"]["rate"] for layer in layers if layer["class_name"] == "Dropout"]
    if kinds not in (["LSTM", "Dropout", "Dense"], ["LSTM", "Dropout", "LSTM", "Dropout", "Dense"]):
        raise CheckpointError(
            f"{path}: layers {kinds} are not the tutorial's small or larger network"
        )
    units = {c["units"] for c in lstms}
    gates = {c.get("recurrent_activation", GateActivation.HARD_SIGMOID) for c in lstms}
    if len(units) != 1 or len(gates) != 1 or any(c.get("activation", "tanh") != "tanh" for c in lstms):
        raise CheckpointError(f"{path}: LSTM layers differ in units or activations")
    gate = gates.pop()
    if gate not in tuple(GateActivation):
        raise CheckpointError(f"{path}: recurrent_activation {gate!r} is not supported")
    shape = lstms[0].get("batch_input_shape") or [None, 100, 1]
    if shape[-1] != 1:
        raise CheckpointError(f"{path}: expects {shape[-1]} input features, the tutorial used 1")
    config = replace(
        presets.TUTORIAL.model, hidden_size=units.pop(), num_layers=len(lstms), dropout=dropouts[0],
        gate_activation=gate,
    )
    return config, int(shape[1])


def tutorial_vocab_candidates(text_path: Path) -> dict[str, tuple[str, CorpusConfig]]:
    """The text as the tutorial's code read it, under Python 2 and under Python 3."""
    raw = text_path.read_bytes()
    # Python 2: bytes, ASCII-only lower(); latin-1 maps each byte to one character.
    python2 = raw.lower().decode("latin-1")
    try:
        # Python 3: UTF-8 with universal newlines (open() turns \r\n and \r into \n).
        python3 = normalize_newlines(raw.decode("utf-8")).lower()
    except UnicodeDecodeError:
        python3 = None
    base = CorpusConfig(lowercase=True, strip_gutenberg=False, normalize=False)
    found = {"Python 2 bytes": (python2, replace(base, encoding="latin-1"))}
    if python3 is not None:
        found["Python 3 text"] = (python3, replace(base, encoding="utf-8"))
    return found


def keras_weights_to_model(config: ModelConfig, lstm_layers: list[dict[str, Any]],
                           dense: dict[str, Any]) -> CharLSTM:
    """A CharLSTM holding Keras's LSTM and Dense weights (kernels transposed, bias_hh zero)."""
    model = CharLSTM(config)
    state = model.state_dict()
    for index, w in enumerate(lstm_layers):
        state[f"rnn.weight_ih_l{index}"] = torch.from_numpy(w["kernel"].T.copy())
        state[f"rnn.weight_hh_l{index}"] = torch.from_numpy(w["recurrent_kernel"].T.copy())
        state[f"rnn.bias_ih_l{index}"] = torch.from_numpy(w["bias"].copy())
        state[f"rnn.bias_hh_l{index}"] = torch.zeros_like(state[f"rnn.bias_hh_l{index}"])
    state["head.weight"] = torch.from_numpy(dense["kernel"].T.copy())
    state["head.bias"] = torch.from_numpy(dense["bias"].copy())
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model


def import_keras(weights_path: Path, text_path: Path, out_dir: Path) -> Path:
    """Write a charlstm run for a tutorial Keras checkpoint; returns the checkpoint path."""
    weights_path, text_path, out_dir = Path(weights_path), Path(text_path), Path(out_dir)
    runs.check_fresh(out_dir)
    if not text_path.is_file():
        raise CorpusError(f"{text_path}: no such file")
    layers, weights, attrs = read_keras_file(weights_path)
    model_cfg, seq_len = model_config_from_layers(layers, weights_path)
    names = {kind: [layer["config"]["name"] for layer in layers if layer["class_name"] == kind]
             for kind in ("LSTM", "Dense")}
    missing = [n for n in names["LSTM"] + names["Dense"] if n not in weights]
    if missing:
        raise CheckpointError(f"{weights_path}: no weights for layer(s) {', '.join(missing)}")
    dense = weights[names["Dense"][0]]
    vocab_size = dense["kernel"].shape[1]

    readings = tutorial_vocab_candidates(text_path)
    sizes = {name: len(set(text)) for name, (text, _) in readings.items()}
    match = next((name for name, size in sizes.items() if size == vocab_size), None)
    if match is None:
        tried = ", ".join(f"{size} read as {name}" for name, size in sizes.items())
        raise CorpusError(
            f"{weights_path} predicts {vocab_size} characters but {text_path} gives {tried} "
            "(lowercased, as the tutorial did); pass the exact text the model was trained on, "
            "with the header and footer deleted as in the tutorial"
        )
    text, corpus_cfg = readings[match]
    vocab = Vocab.from_text(text)
    model_cfg = replace(model_cfg, vocab_size=vocab_size)
    large = model_cfg.num_layers == 2
    train_cfg = replace((presets.TUTORIAL_LARGE if large else presets.TUTORIAL).train, seq_len=seq_len)

    model = keras_weights_to_model(model_cfg, [weights[n] for n in names["LSTM"]], dense)

    data = write_prepared(text, vocab, out_dir / runs.DATA_DIR, val_fraction=0.0, test_fraction=0.0,
                          extra_meta={"sources": [str(text_path)], "corpus_config": asdict(corpus_cfg)})
    name_match = _NAME.search(weights_path.name)
    epoch, loss = (int(name_match[1]), float(name_match[2])) if name_match else (0, None)
    # The file's own attributes, minus the architecture and training config it repeats.
    keras_attrs = {k: v for k, v in attrs.items() if k not in ("model_config", "training_config")}
    meta = CheckpointMeta(
        model_config=model_cfg, train_config=train_cfg, corpus_config=corpus_cfg, vocab=vocab.to_list(),
        progress=Progress(epoch=epoch, best=loss), data_sha256=data.sha256,
        imported_from={"file": weights_path.name, "vocab_reading": match, **keras_attrs},
    )
    runs.write_config(out_dir, runs.config_record(model_cfg, train_cfg, corpus_cfg,
                                                  imported_from=weights_path.name))
    stem = name_match[0] + ("-bigger" if large else "") if name_match else "imported"
    best_meta = meta if loss is None else replace(meta, metric=Metric(str(CheckpointMetric.TRAIN_LOSS), loss))
    path = save_checkpoint(out_dir / (stem + SUFFIX), model=model, meta=best_meta)
    save_checkpoint(out_dir / runs.LAST, model=model, meta=meta)
    log.info("imported %s (%s, %d layer(s), %s gates, vocabulary read as %s)", weights_path.name,
             "larger" if large else "small", model_cfg.num_layers, model_cfg.gate_activation, match)
    return path
