"""``charlstm generate``, ``eval`` and ``info``: use and inspect a trained run."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from charlstm.cli.options import config_flags, field_help, parse_char_count
from charlstm.config.dynamic import DynamicConfig
from charlstm.config.sample import SampleConfig
from charlstm.generation.items import MAX_ITEM_CHARS, NEW_ONLY_DRAWS

if TYPE_CHECKING:
    from collections.abc import Iterator

    from charlstm.generation.stops import SampleStops
    from charlstm.model.loss import EvalResult
    from charlstm.runs.loading import LoadedModel


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
        "--stop", metavar="TEXT",
        help="End a sample when its text ends with this (left out of the text); repeat for up to 4.")
    ] = None,
    interactive: Annotated[bool, typer.Option(help="Type text, the model continues it; /quit ends.")] = False,
    device: Annotated[str, typer.Option()] = "cpu",
    items: Annotated[int | None, typer.Option(
        min=1, max=1_000_000, rich_help_panel="Lists of things",
        help="Print this many whole items, one per line (a model trained with --records: 10 unless "
             "given); --prompt starts each item.")] = None,
    label: Annotated[list[str] | None, typer.Option(
        "--label", metavar="LABEL", rich_help_panel="Lists of things",
        help="Items of this label; repeat for several (unset: labels drawn as often as in training).")
    ] = None,
    new_only: Annotated[bool, typer.Option(
        "--new-only", rich_help_panel="Lists of things",
        help=f"Only items not in the training list (draws at most {NEW_ONLY_DRAWS} x --items).")] = False,
    json_lines: Annotated[bool, typer.Option(
        "--json", rich_help_panel="Lists of things",
        help="One JSON object per item: text, label, novel, logprob, chars, complete.")] = False,
    max_item_chars: Annotated[int, typer.Option(
        min=1, max=100_000, rich_help_panel="Lists of things",
        help="Cut (and flag) an item that has not ended by then.")] = MAX_ITEM_CHARS,
    **settings: Any,
) -> None:
    """Generate text, printing it as it comes (whole items, for a model of a list of things)."""
    from charlstm.generation.generators import generate as run_generate
    from charlstm.generation.stops import SampleStops, check_stops
    from charlstm.model.runtime import resolve_device
    from charlstm.runs.loading import load_model

    config = SampleConfig(**settings)
    stops = check_stops(stop or [])
    if prompt_file is not None:
        prompt = _read_prompt_file(prompt_file, prompt, interactive)
    loaded = load_model(run, resolve_device(device))
    if loaded.meta.items is not None or items or label or new_only:
        wanted = ItemRequest(items or 10, tuple(label or ()), new_only, max_item_chars, json_lines)
        _print_items(loaded, config, prompt or "", wanted)
        return
    if config.beam is not None:
        if interactive:
            from charlstm.errors import ConfigError

            raise ConfigError("--interactive prints text as it is drawn; a beam is known only at its end")
        _print_beam(loaded, prompt, prompt_file is not None, config, stops)
        return
    if interactive:
        _interact(loaded, config, stops)
        return
    if config.best_of > 1:
        _print_best_of(loaded, prompt, prompt_file is not None, config, stops)
        return
    used_prompt, steps = run_generate(loaded, prompt or None, config)
    if not prompt and loaded.framing.announces_default_prompt:
        typer.echo(f'Seed:\n"{used_prompt}"', err=True)
    # A file's prompt may be megabytes, and piping a file in asks for what follows it: not echoed.
    echoed = "" if prompt_file is not None else used_prompt
    ends = SampleStops(stops, config.num_samples)
    if config.num_samples == 1:
        _print_as_it_comes(echoed, steps, ends)
    else:
        _print_samples(echoed, steps, ends)


@dataclasses.dataclass(frozen=True)
class ItemRequest:
    count: int
    labels: tuple[str, ...]
    new_only: bool
    max_item_chars: int
    json_lines: bool


def _print_items(loaded: LoadedModel, config: SampleConfig, prompt: str, wanted: ItemRequest) -> None:
    """Whole items, one per line (items holding line breaks: a blank line between), or JSON lines."""
    from charlstm.errors import ConfigError
    from charlstm.generation.items import generate_items

    if config.best_of > 1:
        raise ConfigError("best_of applies to running text; a list model's items are scored already "
                          "(--json shows logprob)")
    draw = generate_items(loaded, wanted.count, config, prompt=prompt, labels=wanted.labels,
                          new_only=wanted.new_only, max_item_chars=wanted.max_item_chars)
    for item in draw.items:
        if wanted.json_lines:
            typer.echo(json.dumps({"text": item.text, "label": item.label, "novel": item.novel,
                                   "logprob": round(item.logprob, 4), "chars": item.chars,
                                   "complete": item.complete}, ensure_ascii=False))
        else:
            cut = "" if item.complete else "  [cut: no end within --max-item-chars]"
            typer.echo(item.text + cut + ("\n" if "\n" in item.text else ""))
    if draw.new_share is not None:
        _note(f"{draw.new} of {draw.drawn} drawn items are not in the training list "
              f"({draw.new_share:.0%})")
    if len(draw.items) < wanted.count:
        _note(f"only {len(draw.items)} new items in {draw.drawn} draws")


def _print_best_of(loaded: LoadedModel, prompt: str | None, from_file: bool, config: SampleConfig,
                   stops: tuple[str, ...]) -> None:
    """Best of K: every draw is scored once whole, so the kept samples are printed whole."""
    from charlstm.errors import ConfigError
    from charlstm.generation.generators import generate_best_of

    if stops:
        raise ConfigError("best_of compares whole draws; it takes no stop sequence")
    used_prompt, texts = generate_best_of(loaded, prompt or None, config)
    echoed = "" if from_file else used_prompt
    if len(texts) == 1:
        typer.echo(echoed + texts[0])
        return
    for i, text in enumerate(texts):
        typer.echo(f"--- sample {i + 1} (best of {config.best_of}) ---\n{echoed}{text}")


def _print_beam(loaded: LoadedModel, prompt: str | None, from_file: bool, config: SampleConfig,
                stops: tuple[str, ...]) -> None:
    """Beam search: the continuations are known only once the search ends, so printed whole."""
    from charlstm.generation.beam import generate_beam

    used_prompt, found = generate_beam(loaded, prompt or None, config, stops)
    echoed = "" if from_file else used_prompt
    if len(found) == 1:
        typer.echo(echoed + found[0].text)
        return
    for i, beam in enumerate(found):
        typer.echo(f"--- continuation {i + 1} of beam {config.beam} (mean log-probability "
                   f"{beam.logprob / max(1, beam.chars):.4f}) ---\n{echoed}{beam.text}")


def _read_prompt_file(prompt_file: Path, prompt: str | None, interactive: bool) -> str:
    """The prompt in ``prompt_file`` (- : standard input), once it is the only text given."""
    from charlstm.data.sources import read_prompt
    from charlstm.errors import ConfigError

    if prompt is not None:
        raise ConfigError("give the prompt with --prompt or with --prompt-file, not both")
    if interactive:
        raise ConfigError("--interactive reads its text as you type it; it takes no --prompt-file")
    return read_prompt(sys.stdin.buffer if str(prompt_file) == "-" else prompt_file)


def _interact(loaded: LoadedModel, config: SampleConfig, stops: tuple[str, ...]) -> None:
    """``--interactive``: continue what the user types until /quit, Ctrl-D or Ctrl-C at the prompt."""
    from charlstm.errors import ConfigError
    from charlstm.generation.interactive import interactive

    if stops:
        raise ConfigError("--interactive continues your text until its length; it takes no --stop")
    typer.echo("Type text and press Enter; the model continues it. Enter alone: more; "
               "Ctrl-C: stop the model; /reset: new text; /quit or Ctrl-D: end.", err=True)
    interactive(loaded, config, _read_line, _write_now, _note)


def _print_as_it_comes(echoed: str, steps: Iterator[list[str]], ends: SampleStops) -> None:
    """One sample: each character printed once it cannot be the start of a stop sequence."""
    sys.stdout.write(echoed)
    for step in steps:
        _write_now(ends.feed(0, step[0]))
        if ends.stopped(0):
            break
    sys.stdout.write(ends.end(0, "length") + "\n")
    if ends.stopped(0):
        _note("finished at a stop sequence")


def _print_samples(echoed: str, steps: Iterator[list[str]], ends: SampleStops) -> None:
    """Several samples: generated together, each printed whole under its own heading."""
    texts: list[list[str]] = [[] for _ in ends.reasons]
    for step in steps:
        for text, shown in zip(texts, ends.feed_step(step), strict=True):
            text.append(shown)
        if ends.all_ended:
            break
    held = ends.end_all("length")
    for i, text in enumerate(texts):
        note = " (finished at a stop sequence)" if ends.stopped(i) else ""
        typer.echo(f"--- sample {i + 1}{note} ---\n{echoed}{''.join(text)}{held[i]}")


def _read_line() -> str | None:
    try:
        return input("> ")
    except (EOFError, KeyboardInterrupt):
        return None


def _write_now(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _note(text: str) -> None:
    """A line for the user beside the generated text: on stderr, so the text alone goes on."""
    typer.echo(f"charlstm: {text}", err=True)


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
    # DynamicConfig's fields, declared by hand as --dynamic-NAME; beta2 and eps have no flag.
    dynamic_lr: Annotated[float, typer.Option(
        help=field_help(DynamicConfig, "lr"), rich_help_panel="Dynamic evaluation")] = DynamicConfig.lr,
    dynamic_seq_len: Annotated[int, typer.Option(
        help=field_help(DynamicConfig, "seq_len"), rich_help_panel="Dynamic evaluation")
    ] = DynamicConfig.seq_len,
    dynamic_decay: Annotated[float, typer.Option(
        help=field_help(DynamicConfig, "decay"), rich_help_panel="Dynamic evaluation")
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
