"""``charlstm generate``, ``eval`` and ``info``: use and inspect a trained run."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from charlstm.cli.options import config_flags, parse_char_count
from charlstm.config.dynamic import DynamicConfig
from charlstm.config.sample import SampleConfig

if TYPE_CHECKING:
    from charlstm.model.loss import EvalResult


@config_flags(SampleConfig)
def generate(
    run: Annotated[Path, typer.Argument(help="Run folder (its best checkpoint) or a checkpoint file.")],
    prompt: Annotated[
        str | None, typer.Option(help="Text to continue (default: as the model was trained).")
    ] = None,
    prompt_file: Annotated[Path | None, typer.Option(
        help="Read the prompt from this UTF-8 file (- reads standard input), of any length, cleaned as "
             "--prompt is. Only the continuation is printed, not the prompt.")] = None,
    stop: Annotated[list[str] | None, typer.Option(
        "--stop", help="End a sample when its text ends with this (left out of the text); repeat for "
                       "up to 4.")] = None,
    interactive: Annotated[bool, typer.Option(help="Type text, the model continues it; /quit ends.")] = False,
    device: Annotated[str, typer.Option()] = "cpu",
    **settings: Any,
) -> None:
    """Generate text, printing it as it comes."""
    from charlstm.errors import ConfigError
    from charlstm.generation.generators import generate as run_generate
    from charlstm.generation.stops import StopMatcher, check_stops
    from charlstm.model.runtime import resolve_device
    from charlstm.runs.loading import load_model

    config = SampleConfig(**settings)
    stops = check_stops(stop or [])
    if prompt_file is not None:
        if prompt is not None:
            raise ConfigError("give the prompt with --prompt or with --prompt-file, not both")
        if interactive:
            raise ConfigError("--interactive reads its text as you type it; it takes no --prompt-file")
        from charlstm.data.sources import read_prompt

        prompt = read_prompt(sys.stdin.buffer if str(prompt_file) == "-" else prompt_file)
    loaded = load_model(run, resolve_device(device))
    if interactive:
        if stops:
            raise ConfigError("--interactive continues your text until its length; it takes no --stop")
        from charlstm.generation.interactive import interactive as run_interactive

        typer.echo("Type text and press Enter; the model continues it. Enter alone: more; "
                   "/reset: new text; /quit or Ctrl-D: end.", err=True)
        run_interactive(loaded, config, _read_line, _write_now)
        return
    used_prompt, steps = run_generate(loaded, prompt or None, config)
    if not prompt and loaded.framing.announces_default_prompt:
        typer.echo(f'Seed:\n"{used_prompt}"', err=True)
    # A file's prompt may be megabytes, and piping a file in asks for what follows it: not echoed.
    echoed = "" if prompt_file is not None else used_prompt
    if config.num_samples == 1:
        sys.stdout.write(echoed)
        matcher = StopMatcher(stops)
        for step in steps:
            _write_now(matcher.feed(step[0]))
            if matcher.stopped:
                break
        sys.stdout.write(matcher.flush() + "\n")
        if matcher.stopped:
            typer.echo("charlstm: finished at a stop sequence", err=True)
        return
    matchers = [StopMatcher(stops) for _ in range(config.num_samples)]
    texts: list[list[str]] = [[] for _ in matchers]
    for step in steps:
        for matcher, text, ch in zip(matchers, texts, step, strict=True):
            if not matcher.stopped:
                text.append(matcher.feed(ch))
        if all(m.stopped for m in matchers):
            break
    for i, (matcher, text) in enumerate(zip(matchers, texts, strict=True)):
        note = " (finished at a stop sequence)" if matcher.stopped else ""
        typer.echo(f"--- sample {i + 1}{note} ---\n{echoed}{''.join(text)}{matcher.flush()}")


def _read_line() -> str | None:
    try:
        return input("> ")
    except (EOFError, KeyboardInterrupt):
        return None


def _write_now(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


@config_flags(SampleConfig, only={"unknown", "replacement"})
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.")],
    text: Annotated[
        list[Path] | None, typer.Argument(help="Score this text instead of the held-out split.")
    ] = None,
    split: Annotated[str, typer.Option(help="val or test, when no TEXT is given.")] = "val",
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    device: Annotated[str, typer.Option()] = "cpu",
    max_chars: Annotated[int, typer.Option(
        parser=parse_char_count, metavar="N|all",
        help="Score only the text's first N characters (all or 0: every one).")] = 0,
    dynamic: Annotated[bool, typer.Option(
        "--dynamic", help="Also score while adapting the weights to the text as it is read.",
        rich_help_panel="Dynamic evaluation")] = False,
    dynamic_lr: Annotated[float, typer.Option(rich_help_panel="Dynamic evaluation")] = DynamicConfig.lr,
    dynamic_seq_len: Annotated[int, typer.Option(
        help="Characters per segment: scored, then learnt.", rich_help_panel="Dynamic evaluation")
    ] = DynamicConfig.seq_len,
    dynamic_decay: Annotated[float, typer.Option(
        help="Pull towards the trained weights per segment.", rich_help_panel="Dynamic evaluation")
    ] = DynamicConfig.decay,
    **settings: Any,
) -> None:
    """Loss (nats/char), bits/char and perplexity on held-out or given text."""
    from charlstm.analysis.evaluate import dynamic_score_run, score_run

    if not dynamic:
        result = score_run(run, text, split=split, device=device, max_chars=max_chars or None,
                           progress=not json_out, **settings)
        typer.echo(json.dumps(result.as_dict()) if json_out else _describe(result))
        return
    config = DynamicConfig(lr=dynamic_lr, seq_len=dynamic_seq_len, decay=dynamic_decay)
    both = dynamic_score_run(run, text, config=config, split=split, device=device, progress=not json_out,
                             max_chars=max_chars or None, **settings)
    if json_out:
        typer.echo(json.dumps({"static": both.static.as_dict(), "dynamic": both.dynamic.as_dict(),
                               "dynamic_settings": dataclasses.asdict(config)}))
    else:
        typer.echo(f"static:  {_describe(both.static)}")
        typer.echo(f"dynamic: {_describe(both.dynamic)} "
                   f"({both.static.loss - both.dynamic.loss:+.4f} nats/char better)")


def _describe(result: EvalResult) -> str:
    return (f"loss {result.loss:.4f} nats/char, {result.bits_per_char:.4f} bits/char, "
            f"perplexity {result.perplexity:.3f} over {result.characters} characters")


def info(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Config, vocabulary, parameter count and best metrics of a run."""
    from charlstm.runs.loading import run_info

    facts = run_info(run).as_dict()
    if json_out:
        typer.echo(json.dumps(facts, indent=2))
        return
    for key, value in facts.items():
        typer.echo(f"{key}: {json.dumps(value) if isinstance(value, dict | list) else value}")
