"""Importing the Keras tutorial's HDF5 checkpoints: exact predictions against Keras's equations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from _runs import window_ids
from charlstm.cli.app import app
from charlstm.config.sample import SampleConfig
from charlstm.errors import CheckpointError, CorpusError
from charlstm.generation.sampling import make_generator
from charlstm.interop.keras_import import import_keras
from charlstm.runs.loading import load_model

h5py = pytest.importorskip("h5py")

SYMBOLS = "\n !',.:;?abcdefghijklmnopqrstuvwxyz"  # sorted: the tutorial's vocabulary order


def write_text(path: Path, vocab_size: int, seed: int = 0) -> str:
    """ASCII text whose lowercased, sorted character set has exactly ``vocab_size`` symbols."""
    symbols = SYMBOLS[:vocab_size]
    rng = np.random.default_rng(seed)
    text = "".join(symbols) + "".join(rng.choice(list(symbols), 3000))
    path.write_bytes(text.encode("ascii"))
    return text


def write_keras_file(
    path: Path, *, vocab_size: int, units: int, layers: int, gate: str, window: int,
    keras_22: bool = False, seed: int = 0,
) -> dict[str, dict[str, np.ndarray]]:
    """A whole-model HDF5 file in Keras 2's layout, with random weights; returns the weights."""
    rng = np.random.default_rng(seed)
    config, weights = [], {}
    for i in range(layers):
        name, inputs = f"lstm_{i + 1}", 1 if i == 0 else units
        lstm = {"name": name, "units": units, "activation": "tanh", "recurrent_activation": gate,
                "return_sequences": i < layers - 1, "unit_forget_bias": True}
        if i == 0:
            lstm["batch_input_shape"] = [None, window, 1]
        config.append({"class_name": "LSTM", "config": lstm})
        config.append({"class_name": "Dropout", "config": {"name": f"dropout_{i + 1}", "rate": 0.2}})
        weights[name] = {
            "kernel": rng.normal(0, 0.6, (inputs, 4 * units)).astype(np.float32),
            "recurrent_kernel": rng.normal(0, 0.4, (units, 4 * units)).astype(np.float32),
            "bias": rng.normal(0, 0.3, 4 * units).astype(np.float32),
        }
    config.append({"class_name": "Dense", "config": {"name": "dense_1", "units": vocab_size,
                                                     "activation": "softmax"}})
    weights["dense_1"] = {"kernel": rng.normal(0, 1.0, (units, vocab_size)).astype(np.float32),
                          "bias": rng.normal(0, 0.2, vocab_size).astype(np.float32)}
    model_config = {"class_name": "Sequential",
                    "config": {"name": "sequential_1", "layers": config} if keras_22 else config}
    layer_names = [c["config"]["name"] for c in config]
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.2.4" if keras_22 else b"2.0.3"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(model_config).encode()
        group = f.create_group("model_weights")
        group.attrs["layer_names"] = [n.encode() for n in layer_names]
        for name in layer_names:
            layer = group.create_group(name)
            names = [f"{name}/{k}:0" for k in weights.get(name, {})]
            layer.attrs["weight_names"] = [n.encode() for n in names]
            for key, value in weights.get(name, {}).items():
                layer.create_dataset(f"{name}/{key}:0", data=value)
    return weights


def keras_probabilities(weights, gate: str, window_ids_: np.ndarray, vocab_size: int) -> np.ndarray:
    """Keras's forward pass in NumPy (float64): scaled ids -> LSTM(s) -> softmax."""
    act = (lambda x: np.clip(0.2 * x + 0.5, 0, 1)) if gate == "hard_sigmoid" else (
        lambda x: 1 / (1 + np.exp(-x)))
    seq = window_ids_[:, :, None].astype(np.float64) / vocab_size  # (B, T, 1)
    for name in sorted(n for n in weights if n.startswith("lstm")):
        w = weights[name]
        units = w["recurrent_kernel"].shape[0]
        h = np.zeros((seq.shape[0], units))
        c = np.zeros_like(h)
        outputs = []
        for t in range(seq.shape[1]):
            z = seq[:, t] @ w["kernel"] + h @ w["recurrent_kernel"] + w["bias"]
            i, f = act(z[:, :units]), act(z[:, units : 2 * units])
            c = f * c + i * np.tanh(z[:, 2 * units : 3 * units])
            h = act(z[:, 3 * units :]) * np.tanh(c)
            outputs.append(h)
        seq = np.stack(outputs, axis=1)
    logits = seq[:, -1] @ weights["dense_1"]["kernel"] + weights["dense_1"]["bias"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


CASES = [  # (layers, gate, keras 2.2 layout)
    (1, "hard_sigmoid", False),
    (1, "sigmoid", True),
    (2, "hard_sigmoid", False),
    (2, "sigmoid", True),
]


@pytest.mark.parametrize(("layers", "gate", "keras_22"), CASES)
def test_imported_model_predicts_what_keras_predicted(tmp_path, layers, gate, keras_22):
    vocab_size, window = 14, 20
    text = write_text(tmp_path / "wonderland.txt", vocab_size)
    weights = write_keras_file(tmp_path / "weights-improvement-19-1.9435.hdf5", vocab_size=vocab_size,
                               units=16, layers=layers, gate=gate, window=window, keras_22=keras_22)
    ckpt = import_keras(tmp_path / "weights-improvement-19-1.9435.hdf5", tmp_path / "wonderland.txt",
                        tmp_path / "run")
    suffix = "-bigger" if layers == 2 else ""
    assert ckpt.name == f"weights-improvement-19-1.9435{suffix}.safetensors"
    loaded = load_model(tmp_path / "run")
    assert loaded.model.config.gate_activation == gate
    assert loaded.model.config.num_layers == layers
    assert loaded.seq_len == window and loaded.framing.name == "window"
    ids = loaded.vocab.encode(text)
    starts = np.arange(0, len(ids) - window, 97)[:24]
    windows = np.stack([ids[s : s + window] for s in starts])  # (B, T)
    with torch.no_grad():
        logits, _ = loaded.model(torch.from_numpy(windows))
    ours = logits[:, -1].double().softmax(-1).numpy()
    np.testing.assert_allclose(ours, keras_probabilities(weights, gate, windows, vocab_size), atol=1e-5)

    # Greedy generation, as the tutorial's script: the window slides by one each step.
    seed_window = ids[:window]
    reference, current = [], seed_window.copy()
    for _ in range(200):
        nxt = int(keras_probabilities(weights, gate, current[None], vocab_size)[0].argmax())
        reference.append(nxt)
        current = np.append(current[1:], nxt)
    config = SampleConfig(length=200, greedy=True)
    steps = window_ids(loaded.model, torch.from_numpy(seed_window), window, config,
                       make_generator(0, torch.device("cpu"))[0])
    assert [int(s[0]) for s in steps] == reference


def test_vocabulary_is_read_as_python_2_bytes_when_the_sizes_say_so(tmp_path):
    # A BOM and CRLF, as the tutorial's file had: Python 2 saw '\r' and the three BOM bytes.
    body = "chapter i. down the rabbit-hole\r\nalice was beginning to get very tired\r\n"
    (tmp_path / "w.txt").write_bytes(b"\xef\xbb\xbf" + body.upper().encode())
    py2_size = len(set((b"\xef\xbb\xbf" + body.encode()).decode("latin-1")))
    write_keras_file(tmp_path / "m.hdf5", vocab_size=py2_size, units=8, layers=1,
                     gate="hard_sigmoid", window=10)
    import_keras(tmp_path / "m.hdf5", tmp_path / "w.txt", tmp_path / "run")
    loaded = load_model(tmp_path / "run")
    assert {"\r", "\xef", "\xbb", "\xbf"} <= set(loaded.vocab.chars)
    assert loaded.meta.imported_from["vocab_reading"] == "Python 2 bytes"


def test_a_vocabulary_size_that_does_not_match_says_what_was_expected(tmp_path):
    write_text(tmp_path / "w.txt", 12)
    write_keras_file(tmp_path / "m.hdf5", vocab_size=20, units=8, layers=1, gate="sigmoid", window=10)
    with pytest.raises(CorpusError, match=r"predicts 20 characters.*12 read as Python 2 bytes"):
        import_keras(tmp_path / "m.hdf5", tmp_path / "w.txt", tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_files_that_are_not_tutorial_models_are_refused(tmp_path):
    write_text(tmp_path / "w.txt", 12)
    (tmp_path / "junk.hdf5").write_bytes(b"not hdf5 at all")
    with pytest.raises(CheckpointError, match="HDF5"):
        import_keras(tmp_path / "junk.hdf5", tmp_path / "w.txt", tmp_path / "run")
    with h5py.File(tmp_path / "weights-only.hdf5", "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(CheckpointError, match="model_config"):
        import_keras(tmp_path / "weights-only.hdf5", tmp_path / "w.txt", tmp_path / "run")


def test_cli_imports_then_generates_greedily_like_the_tutorial(tmp_path):
    write_text(tmp_path / "wonderland.txt", 14)
    write_keras_file(tmp_path / "weights-improvement-47-1.2219-bigger.hdf5", vocab_size=14, units=8,
                     layers=2, gate="hard_sigmoid", window=12)
    runner = CliRunner()
    result = runner.invoke(app, ["import-keras", str(tmp_path / "weights-improvement-47-1.2219-bigger.hdf5"),
                                 "--text", str(tmp_path / "wonderland.txt"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "weights-improvement-47-1.2219-bigger.safetensors").is_file()
    args = ["generate", str(tmp_path / "run"), "--greedy", "--length", "30", "--seed", "4"]
    first, second = runner.invoke(app, args), runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "Seed:" in first.stderr
    assert first.stdout == second.stdout and len(first.stdout) == 12 + 30 + 1


def test_an_imported_run_fine_tunes_on_text_with_new_characters(tmp_path):
    from charlstm.data.vocab import Vocab
    from charlstm.runs.loading import load_model
    from charlstm.training import session as api

    text = write_text(tmp_path / "wonderland.txt", 14)
    write_keras_file(tmp_path / "weights.hdf5", vocab_size=14, units=8, layers=2, gate="hard_sigmoid",
                     window=12)
    result = CliRunner().invoke(app, ["import-keras", str(tmp_path / "weights.hdf5"), "--text",
                                      str(tmp_path / "wonderland.txt"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    old = load_model(tmp_path / "run")
    (tmp_path / "new.txt").write_text(text[:2000] + "XYZ 123\n", encoding="ascii")
    trainer = api.start_run([tmp_path / "new.txt"], tmp_path / "ft", progress_bar=False,
                            overrides={"init_from": str(tmp_path / "run"), "max_steps": 2})
    assert len(trainer.data.vocab) > len(old.vocab)
    ids = Vocab(old.vocab.chars).encode(text[:600].lower())
    device = torch.device("cpu")
    before, after = (m.framing.evaluate(m.model, ids, device=device) for m in (old, trainer))
    assert after.loss == pytest.approx(before.loss, rel=1e-5)
    trainer.fit()


def test_a_fine_tune_of_a_python_2_import_reads_its_new_text_as_utf8(tmp_path):
    from charlstm.training import session as api

    body = "chapter i. down the rabbit-hole\r\nalice was beginning to get very tired\r\n"
    (tmp_path / "w.txt").write_bytes(b"\xef\xbb\xbf" + body.upper().encode())
    py2_size = len(set((b"\xef\xbb\xbf" + body.encode()).decode("latin-1")))
    write_keras_file(tmp_path / "m.hdf5", vocab_size=py2_size, units=8, layers=1, gate="hard_sigmoid",
                     window=10)
    import_keras(tmp_path / "m.hdf5", tmp_path / "w.txt", tmp_path / "run")
    old = load_model(tmp_path / "run")
    assert old.meta.corpus_config.encoding == "latin-1"  # how the tutorial's Python 2 read its file
    (tmp_path / "new.txt").write_text(body * 30 + "\u201cTh\u00e9\u201d said alice.\n", encoding="utf-8")
    trainer = api.start_run([tmp_path / "new.txt"], tmp_path / "ft", progress_bar=False,
                            overrides={"init_from": str(tmp_path / "run"), "max_steps": 1})
    added = set(trainer.data.vocab.chars[len(old.vocab):])
    assert added == {"\u201c", "\u201d", "\u00e9"}  # not \x80 \x9c \x9d \xe2 \xe3 \xa9
    assert trainer.data.corpus_config.encoding == "utf-8" and trainer.data.corpus_config.lowercase
