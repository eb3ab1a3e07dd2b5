"""``charlstm import-keras``, ``export``, ``report``, ``presets`` and ``serve``: runs in and out."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from charlstm.cli.settings_doc import presets_text


def import_keras(
    weights: Annotated[Path, typer.Argument(help="The tutorial's weights-improvement-*.hdf5 file.")],
    text: Annotated[
        Path, typer.Option(help="The text the model was trained on (the tutorial's wonderland.txt).")
    ],
    out: Annotated[Path, typer.Option(help="New run folder.")],
) -> None:
    """Turn a Keras tutorial checkpoint into a charlstm run (needs h5py: the keras extra)."""
    from charlstm.interop.keras_import import import_keras as run_import

    path = run_import(weights, text, out)
    typer.echo(f"wrote {path}; try: charlstm generate {out} --greedy", err=True)


def export(
    run: Annotated[Path, typer.Argument(help="Run folder (its best checkpoint) or a checkpoint file.")],
    out: Annotated[
        Path, typer.Option(help="File to write (model.onnx, model.safetensors), or for hf, web a folder.")
    ],
    format: Annotated[str, typer.Option("--format", help="onnx, safetensors, hf or web.")] = "onnx",
    force: Annotated[bool, typer.Option(
        help="Write over an existing file (hf, web: into a non-empty folder).")] = False,
    weights: Annotated[str, typer.Option(help="web: f32, or f16 to halve the site.")] = "f32",
    include_list: Annotated[bool, typer.Option(
        "--include-list", help="web, a model of a list: ship its training items, so the page marks each "
                               "item new or in the list (a list may be private: off unless set).")] = False,
    allow_nonfinite: Annotated[bool, typer.Option(
        "--allow-nonfinite", help="Export weights that hold NaN or infinity (to inspect them).")] = False,
) -> None:
    """Export for other runtimes: a single-step ONNX graph, weights + config + vocab, a Hub folder,
    or a static web site that generates in the browser."""
    from charlstm.errors import ConfigError
    from charlstm.interop.export import export as run_export
    from charlstm.interop.web import export_web, folder_size
    from charlstm.runs.loading import load_model

    if format != "web" and weights != "f32":
        raise ConfigError(f"weights {weights} is for the web export only",
                          hint="--format web, or no --weights")
    if format != "web" and include_list:
        raise ConfigError("include_list is for the web export only", hint="--format web")
    loaded = load_model(run, allow_nonfinite=allow_nonfinite)
    if format == "web":
        path = export_web(loaded, out, force=force, weights=weights, include_list=include_list)
        size = folder_size(path) / 1024
        typer.echo(f"wrote {path} ({size:,.1f} KiB); open {path / 'index.html'}", err=True)
        return
    path = run_export(loaded, format, out, force=force)
    typer.echo(f"wrote {path}", err=True)


def report(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    out: Annotated[Path | None, typer.Option(help="HTML file to write (default: RUN/report.html).")] = None,
    length: Annotated[int, typer.Option(help="Characters per sample.")] = 400,
    prompt: Annotated[
        str | None, typer.Option(help="Text to continue (default: as the model was trained).")
    ] = None,
    seed: Annotated[int, typer.Option(help="One seed for every temperature's sample.")] = 1,
    device: Annotated[str, typer.Option()] = "cpu",
    items: Annotated[int, typer.Option(
        min=1, max=10_000, help="A list run: items drawn at each temperature.")] = 50,
) -> None:
    """An HTML report: loss curves, best figures, samples and how much they copy (needs matplotlib)."""
    from charlstm.analysis.report import build_report

    path = build_report(run, out, length=length, prompt=prompt or None, seed=seed, device=device, items=items)
    typer.echo(f"wrote {path}", err=True)


def list_presets() -> None:
    """List the presets and what each pins."""
    typer.echo(presets_text())


def serve(
    run: Annotated[
        Path | None, typer.Argument(help="Run folder or checkpoint to serve, named after itself.")
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option(metavar="NAME=PATH", help="Repeat to serve several models.")
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; 127.0.0.1 keeps it to this machine.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, metavar="PORT", help="0: any free port.")] = 8000,
    max_prompt_chars: Annotated[int | None, typer.Option(
        help="Longest prompt accepted: 1 to 100000 (default 4000).")] = None,
    max_length: Annotated[int | None, typer.Option(
        help="Most new characters per sample: 1 to 100000 (default 2000).")] = None,
    max_num_samples: Annotated[int | None, typer.Option(
        help="Most samples per request: 1 to 1024 (default 8).")] = None,
    max_concurrent: Annotated[int | None, typer.Option(
        help="Samples generating at once (the slots); more get 503. 1 to 1024 (default 16).")] = None,
    device: Annotated[str, typer.Option(
        help="cpu, cuda, cuda:N, mps, or auto (CUDA, then MPS, then the CPU).")] = "cpu",
    batching: Annotated[bool, typer.Option(
        help="Step every live stream of a model together; --no-batching gives each generation a "
             "thread of its own (the old path, for comparison).")] = True,
) -> None:
    """Serve models over HTTP: a JSON API, streamed generation and a web page (the serve extra)."""
    # The optional extra, imported only here; without it the import raises a CharLSTMError saying so.
    from charlstm.serve import app as serving

    # Hand-written, not made from ServeLimits' fields: those live beside the extra's pydantic models.
    # ServeLimits checks the ranges the help states (a ConfigError: one line, exit 2).
    limits = {"max_prompt_chars": max_prompt_chars, "max_length": max_length,
              "max_num_samples": max_num_samples, "max_concurrent": max_concurrent}
    models = serving.model_paths(run, model or [])
    log_level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
    serving.run_server(models, serving.ServeLimits(**{k: v for k, v in limits.items() if v is not None}),
                       host=host, port=port, device=device, log_level=log_level, batching=batching)
