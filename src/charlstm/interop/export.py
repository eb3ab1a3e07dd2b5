"""Take a trained model elsewhere: ONNX for any runtime, safetensors for any framework, a Hub folder.

The ONNX graph is one generation step, ``(ids, h, c) -> (logits, h, c)``, with
the batch dimension free, so a runtime generates statefully exactly as
charlstm does: feed the prompt one character at a time (or as a sequence,
``ids`` being (B, T)), then one character per step, passing the state back in.
The vocabulary goes into the model's metadata and into a JSON file beside it.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from charlstm.errors import ConfigError
from charlstm.interop.hf import export_hf
from charlstm.model.network import CharLSTM
from charlstm.runs.checkpoint import save_checkpoint
from charlstm.runs.folder import check_outside_runs
from charlstm.runs.loading import LoadedModel

log = logging.getLogger(__name__)

FORMATS = ("onnx", "safetensors", "hf")


class SingleStep(nn.Module):
    """The model as one step with explicit state: (ids, h[, c]) -> (last logits, h[, c])."""

    def __init__(self, model: CharLSTM):
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, new_state = self.model(ids, tuple(state))  # (B, T, V)
        return (logits[:, -1], *new_state)  # (B, V), then (L, B, H) each


def export_metadata(loaded: LoadedModel) -> dict[str, str]:
    """Plain string metadata any reader understands: vocabulary and configs as JSON."""
    return {
        "charlstm_vocab": json.dumps(loaded.vocab.to_list()),
        "charlstm_model_config": json.dumps(asdict(loaded.model.config)),
        "charlstm_framing": str(loaded.framing.name),
        "charlstm_seq_len": str(loaded.seq_len),
    }


def export_onnx(loaded: LoadedModel, out: Path) -> Path:
    """Write ``out`` (.onnx) and ``out`` with ``.vocab.json``; returns the model path."""
    try:
        import onnx
    except ImportError:
        raise ConfigError("ONNX export needs onnx and onnxscript: pip install 'charlstm[export]'") from None
    model = loaded.model.cpu().eval()
    step = SingleStep(model).eval()
    config = model.config
    state = model.init_state(2)
    state_names = ["h", "c"] if len(state) == 2 else ["h"]
    batch = torch.export.Dim("batch", min=1, max=65536)
    time = torch.export.Dim("time", min=1, max=65536)
    shapes = {"ids": {0: batch, 1: time}, "state": tuple({1: batch} for _ in state)}
    example = (torch.zeros(2, 3, dtype=torch.long), *state)
    out.parent.mkdir(parents=True, exist_ok=True)
    # The exporter narrates each pass on stdout and warns about its own internals: not ours to show.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            step, example, dynamic_shapes=shapes, input_names=["ids", *state_names],
            output_names=["logits", *(f"{n}_out" for n in state_names)], dynamo=True, verbose=False,
        )
    program.save(str(out))
    graph = onnx.load(str(out))
    for key, value in export_metadata(loaded).items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(out))
    vocab_path = out.with_suffix(".vocab.json")
    vocab_path.write_text(json.dumps({"vocab": loaded.vocab.to_list(), "framing": str(loaded.framing.name),
                                      "seq_len": loaded.seq_len, "num_layers": config.num_layers,
                                      "hidden_size": config.hidden_size, "cell": config.cell}, indent=2))
    return out


def export_safetensors(loaded: LoadedModel, out: Path) -> Path:
    """Weights with configs and vocabulary, no training state: small, and charlstm loads it too."""
    return save_checkpoint(out, model=loaded.model, meta=loaded.meta)  # no optimizer: no training state


def export(loaded: LoadedModel, fmt: str, out: Path, *, force: bool = False) -> Path:
    """Write ``loaded`` as ``fmt`` to ``out``: a file, or for hf a folder.

    An existing file (or a non-empty folder) is written over only with ``force``, and never
    one in a run folder: pruning or resuming there would mix it up with the run's own files.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    check_outside_runs(out)
    if fmt == "hf":
        return export_hf(loaded, out, force=force)
    if out.is_dir():  # not even with force: a folder is not written over by a file
        raise ConfigError(f"{out} is a folder; a {fmt} export is one file: name the file to write",
                          hint=f"--out {out / ('model.' + fmt)}")
    if out.exists() and not force:
        raise ConfigError(f"{out} exists; choose another --out, or --force to write over it",
                          hint="--force, or another --out")
    return export_onnx(loaded, out) if fmt == "onnx" else export_safetensors(loaded, out)
