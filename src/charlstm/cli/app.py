"""The ``charlstm`` command: parse, call the library, turn errors into exit codes.

Exit codes: 0 done (also after Ctrl-C in training, which saves first), 1 other
error, 2 bad usage or setting, 3 unusable text, 4 bad run or checkpoint,
5 training diverged.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from tqdm.contrib.logging import logging_redirect_tqdm

from charlstm import presets
from charlstm.errors import CharLSTMError, ConfigError
from charlstm.training import distributed
from charlstm.training import session as api

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Train character-level LSTM language models on your own text and generate from them.",
)
log = logging.getLogger("charlstm")

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*$")


def parse_duration(text: str) -> float:
    """'90', '90s', '5m', '1h30m', '2.5m' -> seconds."""
    match = _DURATION.match(text)
    if not text.strip() or not match or not any(match.groups()):
        raise ConfigError(f"cannot read duration {text!r}; write e.g. 300, 300s, 5m or 1h30m")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ConfigError("a duration must be positive")
    return total


def _run(func, *args, **kwargs) -> Any:
    """Call library code; a CharLSTMError becomes one line on stderr and its exit code."""
    try:
        return func(*args, **kwargs)
    except CharLSTMError as exc:
        typer.echo(f"charlstm: error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None


@app.callback()
def main_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="More log detail.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Warnings and errors only.")] = False,
) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    _console_level(level)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time, not the stream of when it was made.

    Test runners and embedding programs swap ``sys.stderr``; a handler holding the old one
    would write into a closed stream.
    """

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass  # always sys.stderr


def _console_level(level: int) -> None:
    # On the handlers, not only the logger: a run's log file takes INFO even when the console is quiet.
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)


Opt = typer.Option


@app.command()
def train(
    text: Annotated[
        list[Path] | None, typer.Argument(help="Text files or folders of .txt (default: the bundled Alice).")
    ] = None,
    out: Annotated[Path | None, Opt(help="New run folder.")] = None,
    resume: Annotated[Path | None, Opt(help="Continue this run folder from its last checkpoint.")] = None,
    preset: Annotated[str | None, Opt(help=f"One of: {', '.join(presets.PRESETS)} (default).")] = None,
    epochs: Annotated[int | None, Opt()] = None,
    max_steps: Annotated[int | None, Opt()] = None,
    time_budget: Annotated[str | None, Opt(help="Wall-clock limit, e.g. 300, 5m, 1h30m.")] = None,
    hidden_size: Annotated[int | None, Opt()] = None,
    num_layers: Annotated[int | None, Opt()] = None,
    embedding_size: Annotated[int | None, Opt()] = None,
    dropout: Annotated[float | None, Opt()] = None,
    cell: Annotated[str | None, Opt(help="lstm, gru or rnn.")] = None,
    input_encoding: Annotated[str | None, Opt(help="embedding, one-hot or scalar.")] = None,
    init: Annotated[str | None, Opt(help="pytorch or keras.")] = None,
    gate_activation: Annotated[str | None, Opt(help="sigmoid, or hard_sigmoid as Keras 2.0-2.2.")] = None,
    framing: Annotated[str | None, Opt(help="stream or window.")] = None,
    seq_len: Annotated[int | None, Opt()] = None,
    batch_size: Annotated[int | None, Opt()] = None,
    optimizer: Annotated[str | None, Opt(help="adam or adamw.")] = None,
    lr: Annotated[float | None, Opt()] = None,
    adam_eps: Annotated[float | None, Opt(help="Adam epsilon (Keras 2.0: 1e-8, today: 1e-7).")] = None,
    weight_decay: Annotated[float | None, Opt()] = None,
    grad_clip: Annotated[float | None, Opt()] = None,
    lr_schedule: Annotated[str | None, Opt(help="cosine or constant.")] = None,
    warmup_steps: Annotated[int | None, Opt()] = None,
    val_fraction: Annotated[float | None, Opt()] = None,
    test_fraction: Annotated[float | None, Opt()] = None,
    eval_every: Annotated[int | None, Opt()] = None,
    eval_max_chars: Annotated[int | None, Opt()] = None,
    keep_best: Annotated[int | None, Opt()] = None,
    sample_every: Annotated[int | None, Opt(help="Log short samples every N steps (0: never).")] = None,
    lowercase: Annotated[bool | None, Opt("--lowercase/--no-lowercase")] = None,
    strip_gutenberg: Annotated[bool | None, Opt("--strip-gutenberg/--no-strip-gutenberg")] = None,
    encoding: Annotated[str | None, Opt(help="Encoding of the text files.")] = None,
    seed: Annotated[int | None, Opt()] = None,
    device: Annotated[str | None, Opt(help="auto, cpu, cuda or mps.")] = None,
    precision: Annotated[str | None, Opt(help="fp32, or bf16 autocast on GPUs that have it.")] = None,
    compile: Annotated[bool | None, Opt("--compile/--no-compile", help="torch.compile the model.")] = None,
    progress: Annotated[bool, Opt("--progress/--no-progress", help="Progress bar.")] = True,
) -> None:
    """Train a model (new run with --out, or --resume RUN)."""
    overrides = {k: v for k, v in locals().items()
                 if v is not None and k not in {"text", "out", "resume", "preset", "progress"}}
    if time_budget is not None:
        overrides["time_budget"] = _run(parse_duration, time_budget)
    if resume is not None:
        if text or out or preset:
            _run(_fail, "--resume takes no TEXT, --out or --preset: the run folder has them")
        trainer = _run(api.resume_run, resume, overrides=overrides, progress_bar=progress)
    else:
        if out is None:
            _run(_fail, "give --out RUN_FOLDER for a new run (or --resume RUN)")
        trainer = _run(api.start_run, text, out, preset=preset or "default", overrides=overrides,
                       progress_bar=progress)
    try:
        with logging_redirect_tqdm():  # log lines print above the progress bar, not through it
            _console_level(logging.getLogger().level)
            result = _run(trainer.fit)
    finally:
        distributed.shutdown()
    if not trainer.dist.is_main:
        return
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in result.last_eval.items() if "loss" in k or "bits" in k)
    typer.echo(f"trained {result.progress.step} steps ({result.stop_reason}); {metrics}", err=True)
    if result.stop_reason == "interrupted":
        typer.echo(f"stopped by Ctrl-C; continue with: charlstm train --resume {result.run_dir}", err=True)


def _fail(message: str) -> None:
    raise ConfigError(message)


@app.command()
def prepare(
    text: Annotated[list[Path], typer.Argument(help="Text files or folders of .txt.")],
    out: Annotated[Path, Opt(help="New data folder (train.bin, val.bin, meta.json).")],
    val_fraction: Annotated[float, Opt(help="The last part of the text held out.")] = 0.1,
    test_fraction: Annotated[float, Opt()] = 0.0,
    lowercase: Annotated[bool, Opt("--lowercase/--no-lowercase")] = False,
    strip_gutenberg: Annotated[bool, Opt("--strip-gutenberg/--no-strip-gutenberg")] = True,
    encoding: Annotated[str, Opt()] = "utf-8",
    progress: Annotated[bool, Opt("--progress/--no-progress")] = True,
) -> None:
    """Clean and encode a corpus of any size into token files that `train` reads from disk."""
    from charlstm.config.corpus import CorpusConfig
    from charlstm.data.prepare import prepare_corpus

    corpus = _run(CorpusConfig, lowercase=lowercase, strip_gutenberg=strip_gutenberg, encoding=encoding)
    data = _run(prepare_corpus, text, out, corpus=corpus, val_fraction=val_fraction,
                test_fraction=test_fraction, progress_bar=progress)
    sizes = ", ".join(f"{k} {v:,}" for k, v in data.meta["sizes"].items())
    typer.echo(f"prepared {out}: vocabulary {len(data.vocab)}, {sizes}", err=True)


@app.command()
def generate(
    run: Annotated[Path, typer.Argument(help="Run folder (its best checkpoint) or a checkpoint file.")],
    prompt: Annotated[str | None, Opt(help="Text to continue (default: as the model was trained).")] = None,
    length: Annotated[int, Opt()] = 500,
    temperature: Annotated[float, Opt()] = 1.0,
    top_k: Annotated[int | None, Opt()] = None,
    top_p: Annotated[float | None, Opt()] = None,
    greedy: Annotated[bool, Opt(help="Always the most likely character.")] = False,
    num_samples: Annotated[int, Opt()] = 1,
    seed: Annotated[int | None, Opt()] = None,
    unknown: Annotated[
        str, Opt(help="Prompt characters not in the vocabulary: error, drop or replace.")
    ] = "error",
    replacement: Annotated[str | None, Opt(help="The character --unknown replace uses.")] = None,
    interactive: Annotated[bool, Opt(help="Type text, the model continues it; /quit ends.")] = False,
    device: Annotated[str, Opt()] = "cpu",
) -> None:
    """Generate text, printing it as it comes."""
    from charlstm.config.sample import SampleConfig
    from charlstm.generation.generators import generate as run_generate
    from charlstm.model.runtime import resolve_device
    from charlstm.runs.loading import load_model

    config = _run(SampleConfig, length=length, temperature=temperature, top_k=top_k, top_p=top_p,
                  greedy=greedy, num_samples=num_samples, seed=seed, unknown=unknown,
                  replacement=replacement)
    loaded = _run(load_model, run, _run(resolve_device, device))
    if interactive:
        from charlstm.generation.interactive import interactive as run_interactive

        typer.echo("Type text and press Enter; the model continues it. Enter alone: more; "
                   "/reset: new text; /quit or Ctrl-D: end.", err=True)
        _run(run_interactive, loaded, config, _read_line, _write_now)
        return
    used_prompt, steps = _run(run_generate, loaded, prompt or None, config)
    if not prompt and loaded.framing == "window":
        typer.echo(f'Seed:\n"{used_prompt}"', err=True)
    if num_samples == 1:
        sys.stdout.write(used_prompt)
        for step in steps:
            sys.stdout.write(step[0])
            sys.stdout.flush()
        sys.stdout.write("\n")
        return
    samples = [[] for _ in range(num_samples)]
    for step in steps:
        for sample, ch in zip(samples, step, strict=True):
            sample.append(ch)
    for i, sample in enumerate(samples):
        typer.echo(f"--- sample {i + 1} ---\n{used_prompt}{''.join(sample)}")


def _read_line() -> str | None:
    try:
        return input("> ")
    except (EOFError, KeyboardInterrupt):
        return None


def _write_now(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


@app.command("eval")
def evaluate_cmd(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.")],
    text: Annotated[
        list[Path] | None, typer.Argument(help="Score this text instead of the held-out split.")
    ] = None,
    split: Annotated[str, Opt(help="val or test, when no TEXT is given.")] = "val",
    unknown: Annotated[str, Opt(help="Characters not in the vocabulary: error, drop or replace.")] = "error",
    replacement: Annotated[str | None, Opt()] = None,
    json_out: Annotated[bool, Opt("--json", help="Print JSON.")] = False,
    device: Annotated[str, Opt()] = "cpu",
) -> None:
    """Loss (nats/char), bits/char and perplexity on held-out or given text."""
    from charlstm.analysis.evaluate import score_run

    result = _run(score_run, run, text, split=split, unknown=unknown, replacement=replacement,
                  device=device)
    if json_out:
        typer.echo(json.dumps(result.as_dict()))
    else:
        typer.echo(f"loss {result.loss:.4f} nats/char, {result.bits_per_char:.4f} bits/char, "
                   f"perplexity {result.perplexity:.3f} over {result.characters} characters")


@app.command()
def info(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.")],
    json_out: Annotated[bool, Opt("--json", help="Print JSON.")] = False,
) -> None:
    """Config, vocabulary, parameter count and best metrics of a run."""
    from charlstm.runs.loading import run_info

    facts = _run(run_info, run)
    if json_out:
        typer.echo(json.dumps(facts, indent=2))
        return
    for key, value in facts.items():
        typer.echo(f"{key}: {json.dumps(value) if isinstance(value, dict | list) else value}")


@app.command("import-keras")
def import_keras_cmd(
    weights: Annotated[Path, typer.Argument(help="The tutorial's weights-improvement-*.hdf5 file.")],
    text: Annotated[Path, Opt(help="The text the model was trained on (the tutorial's wonderland.txt).")],
    out: Annotated[Path, Opt(help="New run folder.")],
) -> None:
    """Turn a Keras tutorial checkpoint into a charlstm run (needs h5py: the keras extra)."""
    from charlstm.interop.keras_import import import_keras

    path = _run(import_keras, weights, text, out)
    typer.echo(f"wrote {path}; try: charlstm generate {out} --greedy", err=True)


@app.command("export")
def export_cmd(
    run: Annotated[Path, typer.Argument(help="Run folder (its best checkpoint) or a checkpoint file.")],
    out: Annotated[Path, Opt(help="File to write (model.onnx, model.safetensors).")],
    format: Annotated[str, Opt("--format", help="onnx or safetensors.")] = "onnx",
) -> None:
    """Export for other runtimes: a single-step ONNX graph, or weights + config + vocab."""
    from charlstm.interop.export import export
    from charlstm.runs.loading import load_model

    path = _run(export, _run(load_model, run), format, out)
    typer.echo(f"wrote {path}", err=True)


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    out: Annotated[Path | None, Opt(help="HTML file to write (default: RUN/report.html).")] = None,
    length: Annotated[int, Opt(help="Characters per sample.")] = 400,
    prompt: Annotated[str | None, Opt(help="Text to continue (default: as the model was trained).")] = None,
    seed: Annotated[int, Opt(help="One seed for every temperature's sample.")] = 1,
    device: Annotated[str, Opt()] = "cpu",
) -> None:
    """An HTML report: loss curves, best figures, samples and how much they copy (needs matplotlib)."""
    from charlstm.analysis.report import build_report

    path = _run(build_report, run, out, length=length, prompt=prompt or None, seed=seed, device=device)
    typer.echo(f"wrote {path}", err=True)


@app.command("presets")
def list_presets() -> None:
    """List the presets and what each pins."""
    for name, preset in presets.PRESETS.items():
        typer.echo(f"{name}: {preset.description}")
        for part in ("model", "train", "corpus"):
            typer.echo(f"  {part}: {json.dumps(asdict(getattr(preset, part)))}")


@app.command()
def serve(
    run: Annotated[
        Path | None, typer.Argument(help="Run folder or checkpoint to serve, named after itself.")
    ] = None,
    model: Annotated[list[str] | None, Opt(help="NAME=PATH; repeat to serve several models.")] = None,
    host: Annotated[str, Opt(help="Address to listen on; 127.0.0.1 keeps it to this machine.")] = "127.0.0.1",
    port: Annotated[int, Opt()] = 8000,
    max_prompt_chars: Annotated[int | None, Opt(help="Longest prompt accepted.")] = None,
    max_length: Annotated[int | None, Opt(help="Most new characters per sample.")] = None,
    max_num_samples: Annotated[int | None, Opt(help="Most samples per request.")] = None,
    max_concurrent: Annotated[int | None, Opt(help="Generations at once; more get 503.")] = None,
    device: Annotated[str, Opt()] = "cpu",
) -> None:
    """Serve models over HTTP: a JSON API, streamed generation and a web page (the serve extra)."""
    import importlib

    serving = _run(importlib.import_module, "charlstm.serve.app")  # the optional extra, imported only here
    limits = {k: v for k, v in locals().items() if k.startswith("max_") and v is not None}
    models = _run(serving.model_paths, run, model or [])
    log_level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
    _run(serving.run_server, models, _run(serving.ServeLimits, **limits), host=host, port=port,
         device=device, log_level=log_level)


def main() -> None:
    app()
