"""The CLI's flags are the config dataclasses' fields: every settable field has a flag of its
name, choices come from the enums, given values reach the run; errors are one line, with the
hint under it."""

from __future__ import annotations

import dataclasses
import errno
import json
import re
import types
import typing
from enum import StrEnum
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer

from _runs import TINY_STREAM, invoke, write_text
from charlstm import presets
from charlstm.cli.app import app, parse_duration
from charlstm.cli.options import field_help
from charlstm.config import CorpusConfig, ModelConfig, SampleConfig, TrainConfig
from charlstm.config.choices import UnknownPolicy
from charlstm.config.dynamic import DynamicConfig
from charlstm.data.prepared import open_prepared
from charlstm.errors import ConfigError
from charlstm.generation import generators
from charlstm.runs import loading
from charlstm.training import session

NOT_FLAGS = {"vocab_size"}  # filled in from the text
SPLITS = {"val_fraction", "test_fraction", "seed"}

# command -> (the configs whose fields it takes, only these of them or all, its own parameters)
COMMANDS: dict[str, tuple[tuple[type, ...], set[str] | None, set[str]]] = {
    "train": ((ModelConfig, TrainConfig, CorpusConfig), None,
              {"text", "out", "resume", "preset", "progress", "overwrite"}),
    "generate": ((SampleConfig,), None, {"run", "prompt", "prompt_file", "stop", "interactive", "device",
                                         "items", "label", "new_only", "json_lines", "max_item_chars"}),
    "prepare": ((CorpusConfig, TrainConfig), {f.name for f in dataclasses.fields(CorpusConfig)} | SPLITS,
                {"text", "out", "progress", "force"}),
    "eval": ((SampleConfig,), {"unknown", "replacement"}, {
        "run", "text", "split", "json_out", "device", "max_chars", "dynamic", "dynamic_lr", "dynamic_seq_len",
        "dynamic_decay"}),
}


def settings(command: str) -> dict[str, Any]:
    """Field name -> type (``X | None`` read as X) of every setting ``command`` should take."""
    configs, only, _ = COMMANDS[command]
    found = {}
    for config in configs:
        hints = typing.get_type_hints(config)
        for f in dataclasses.fields(config):
            if f.name not in NOT_FLAGS and (only is None or f.name in only):
                found[f.name] = _without_none(hints[f.name])
    return found


def _without_none(hint: Any) -> Any:
    if isinstance(hint, types.UnionType):
        (kept,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return kept
    return hint


def click_command(command: str) -> Any:
    return typer.main.get_command(app).commands[command]


def click_params(command: str) -> dict[str, Any]:
    return {p.name: p for p in click_command(command).params}


def click_choices(command: str, name: str) -> list[str]:
    """The values ``--NAME`` accepts, as Click completes them."""
    cmd = click_command(command)
    ctx = cmd.make_context(command, [], resilient_parsing=True)  # no arguments needed to look
    return [item.value for item in click_params(command)[name].shell_complete(ctx, "")]


def flags(overrides: dict[str, Any]) -> list[str]:
    """Library settings as CLI flags: the same names, dashed (None, "no limit", has no flag)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return [arg for k, v in given.items() for arg in (f"--{k.replace('_', '-')}", str(v))]


# ---- the flags are the fields -------------------------------------------------------------------


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_setting_has_a_flag_of_its_name_and_nothing_else_does(command):
    params = click_params(command)
    for name, value_type in settings(command).items():
        dashed = name.replace("_", "-")
        assert name in params, f"charlstm {command} has no --{dashed}"
        assert params[name].opts == [f"--{dashed}"]
        assert params[name].secondary_opts == ([f"--no-{dashed}"] if value_type is bool else [])
        assert params[name].default is None  # not given: the preset's value stands
    assert set(params) == set(settings(command)) | COMMANDS[command][2]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_choice_flags_offer_exactly_the_enum_values(command):
    enums = {name: t for name, t in settings(command).items()
             if isinstance(t, type) and issubclass(t, StrEnum)}
    assert enums or command == "prepare"
    for name, enum in enums.items():
        assert click_choices(command, name) == [member.value for member in enum], name


def test_eval_unknown_is_the_unknown_policy():
    assert click_choices("eval", "unknown") == [p.value for p in UnknownPolicy]


# ---- help: the field's, whole at 80 columns -----------------------------------------------------

# Commands whose settings keep a preset's values when not given: their help shows no default.
PRESET_DEFAULTS = {"train"}


def _shown_default(name: str, default: Any) -> str:
    """The ``[default: ...]`` a flag's help ends with: a bool's as the flag that gives it."""
    if default is None:
        return ""
    if isinstance(default, bool):
        dashed = name.replace("_", "-")
        return f"  [default: {dashed if default else 'no-' + dashed}]"
    return f"  [default: {default.value if isinstance(default, StrEnum) else default}]"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_generated_flag_shows_its_own_configs_field_help(command):
    params = click_params(command)
    configs, only, _ = COMMANDS[command]
    for config in configs:
        for f in dataclasses.fields(config):
            if f.name in NOT_FLAGS or (only is not None and f.name not in only):
                continue
            shown = "" if command in PRESET_DEFAULTS else _shown_default(f.name, f.default)
            assert params[f.name].help == f.metadata["help"] + shown, f"{command} --{f.name}"


def test_generate_seed_is_the_sample_seed_not_the_training_seed():
    assert click_params("generate")["seed"].help.startswith(field_help(SampleConfig, "seed"))
    assert click_params("train")["seed"].help == field_help(TrainConfig, "seed")
    assert field_help(SampleConfig, "seed") != field_help(TrainConfig, "seed")


def test_eval_dynamic_flags_show_the_dynamic_configs_help_and_defaults():
    params = click_params("eval")
    for name in ("lr", "seq_len", "decay"):
        param = params[f"dynamic_{name}"]
        assert param.help == field_help(DynamicConfig, name)
        assert param.default == getattr(DynamicConfig(), name)


def _all_commands() -> list[str]:
    return list(typer.main.get_command(app).commands)


@pytest.mark.parametrize("columns", ["80", "200"])
@pytest.mark.parametrize("command", _all_commands())
def test_help_fits_80_columns_with_every_flag_whole(monkeypatch, command, columns):
    monkeypatch.setenv("COLUMNS", columns)
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    text = result.stdout
    for param in click_command(command).params:
        if param.param_type_name == "argument":
            assert re.search(rf"(?<![\w-]){re.escape(param.metavar)}(?![\w-])", text), param.name
            assert f"{{{param.name}}}" not in text
        for flag in (*param.opts, *param.secondary_opts) if param.param_type_name == "option" else ():
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), f"{flag} cut or missing"
    too_long = [line for line in text.splitlines() if len(line) > 80]
    assert too_long == []
    for unreadable in ("\u2026", "list[", "<bool>", "{run}", "\u2011"):
        assert unreadable not in text, unreadable


def test_help_groups_the_settings_by_config():
    text = invoke("train", "--help").stdout
    headings = [line for line in text.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert headings == ["Arguments:", "Options:", "Model settings:", "Train settings:", "Corpus settings:"]


def test_help_names_arguments_as_click_does():
    assert invoke("eval", "--help").stdout.splitlines()[0].endswith(" eval [OPTIONS] RUN [TEXT]...")
    result = invoke("generate")
    assert "'RUN'" in result.stderr


@pytest.mark.parametrize(("command", "flag"), [("train", "--beta2"), ("generate", "--top-p"),
                                               ("prepare", "--normalize"), ("eval", "--unknown")])
def test_help_lists_the_generated_flags(command, flag):
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert flag in result.stdout


@pytest.mark.parametrize(("text", "seconds"), [("300", 300), ("90s", 90), ("5m", 300), ("1h30m", 5400),
                                               ("2.5m", 150), (" 1h ", 3600)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5x", "m", "0", "0s"])
def test_parse_duration_refuses(text):
    with pytest.raises(ConfigError):
        parse_duration(text)


# ---- given values reach the configs -----------------------------------------------------------


def test_train_flags_reach_the_run_config_and_the_rest_keep_the_preset(tmp_path):
    text = write_text(tmp_path / "text.txt")
    run = tmp_path / "run"
    result = invoke("train", text, "--out", run, *flags({**TINY_STREAM, "max_steps": 3}), "--no-progress",
                    "--beta2", "0.95", "--min-lr-ratio", "0.2", "--checkpoint-name", "x-{step}",
                    "--cell", "gru", "--no-shuffle", "--log-every", "2", "--sample-length", "7",
                    "--time-budget", "1h30m", "--no-normalize")
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert (config["train"]["beta2"], config["train"]["min_lr_ratio"]) == (0.95, 0.2)
    assert config["train"]["checkpoint_name"] == "x-{step}"
    assert (config["train"]["shuffle"], config["train"]["log_every"]) == (False, 2)
    assert (config["train"]["sample_length"], config["train"]["time_budget"]) == (7, 5400)
    assert config["model"]["cell"] == "gru" and config["corpus"]["normalize"] is False
    default = presets.PRESETS["auto"]
    assert config["train"]["lr"] == default.train.lr and config["train"]["seed"] == default.train.seed
    assert (run / "x-3.safetensors").is_file()


def test_prepare_flags_reach_the_data_folder(tmp_path):
    text = write_text(tmp_path / "text.txt")
    out = tmp_path / "data"
    result = invoke("prepare", text, "--out", out, "--lowercase", "--val-fraction", "0.25",
                    "--test-fraction", "0.05", "--no-progress")
    assert result.exit_code == 0, result.output
    data = open_prepared(out)
    assert data.corpus_config == CorpusConfig(lowercase=True)
    total = sum(data.sizes.values())
    assert data.sizes["val"] == round(total * 0.25) and data.sizes["test"] == round(total * 0.05)


def test_prepare_says_its_summary_once(tmp_path):
    result = invoke("prepare", write_text(tmp_path / "text.txt"), "--out", tmp_path / "data", "--no-progress")
    assert result.exit_code == 0, result.output
    summaries = [line for line in result.stderr.splitlines() if line.startswith("prepared ")]
    assert len(summaries) == 1 and "vocabulary" in summaries[0], result.stderr


def test_generate_flags_reach_the_sample_config(monkeypatch):
    seen = {}

    def fake_generate(loaded, prompt, config):
        seen["config"] = config
        return prompt, iter([["a"], ["b"]])

    text_model = SimpleNamespace(meta=SimpleNamespace(items=None))  # running text, not a list of items
    monkeypatch.setattr(loading, "load_model", lambda run, device: text_model)
    monkeypatch.setattr(generators, "generate", fake_generate)
    result = invoke("generate", "RUN", "--prompt", "x", "--length", "2", "--top-k", "3", "--no-greedy",
                    "--unknown", "replace", "--replacement", "?", "--seed", "4")
    assert result.exit_code == 0, result.output
    assert result.stdout == "xab\n"
    assert seen["config"] == SampleConfig(length=2, top_k=3, unknown=UnknownPolicy.REPLACE, replacement="?",
                                          seed=4)


# ---- errors: one line, the hint under it ------------------------------------------------------


@pytest.mark.parametrize("args", [
    ("train", "--cell", "lstmm"),
    ("train", "--hiden-size", "8"),
    ("train", "--hidden-size", "many"),
    ("eval", "RUN", "--unknown", "ignore"),
    ("generate",),
    ("nosuch",),
], ids=["bad-choice", "unknown-flag", "not-a-number", "bad-policy", "missing-run", "unknown-command"])
def test_usage_errors_are_one_line_and_exit_2(args):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("charlstm: error: ")
    assert result.stdout == ""


def test_a_bad_choice_names_the_value_and_the_choices():
    line = invoke("train", "--cell", "lstmm").stderr
    assert "--cell" in line and "'lstmm'" in line and all(f"'{c}'" in line for c in ("lstm", "gru", "rnn"))


def _train_raises(monkeypatch, exc: BaseException) -> None:
    def refuse(*args, **kwargs):
        raise exc

    monkeypatch.setattr(session, "train", refuse)


def test_an_error_with_a_hint_prints_the_hint_under_it(monkeypatch, tmp_path):
    _train_raises(monkeypatch, ConfigError("lr must be positive", hint="--lr 0.001"))
    result = invoke("train", "--out", tmp_path / "run", "--no-progress")
    assert result.exit_code == 2
    assert result.stderr == "charlstm: error: lr must be positive\ncharlstm: hint: --lr 0.001\n"


def test_an_error_without_a_hint_is_one_line(monkeypatch, tmp_path):
    _train_raises(monkeypatch, ConfigError("lr must be positive"))
    result = invoke("train", "--out", tmp_path / "run", "--no-progress")
    assert (result.exit_code, result.stderr) == (2, "charlstm: error: lr must be positive\n")


def test_an_os_error_is_one_line_and_exit_1(monkeypatch, tmp_path):
    target = tmp_path / "run"
    _train_raises(monkeypatch, OSError(errno.ENOSPC, "No space left on device", str(target)))
    result = invoke("train", "--out", target, "--no-progress")
    assert (result.exit_code, result.stderr) == (1, f"charlstm: error: {target}: No space left on device\n")


@pytest.mark.parametrize(("args", "fragment"), [
    (("--resume", "RUN", "--out", "X"), "--resume takes no"),
    (("--resume", "RUN", "--preset", "tutorial"), "--resume takes no"),
    ((), "--out"),
])
def test_train_checks_out_and_resume_before_calling_the_library(monkeypatch, args, fragment):
    _train_raises(monkeypatch, AssertionError("the library was called"))
    result = invoke("train", *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("charlstm: error: ") and fragment in result.stderr


def test_train_passes_only_the_given_flags(monkeypatch, tmp_path):
    calls = []

    def record(*args, **kwargs):
        calls.append((args, kwargs))
        return SimpleNamespace(progress=SimpleNamespace(step=0), stop_reason="max_steps", last_eval={},
                               run_dir=Path("r"), is_main=True)

    monkeypatch.setattr(session, "train", record)
    result = invoke("train", "t.txt", "--out", tmp_path / "run", "--hidden-size", "8", "--no-lowercase",
                    "--no-progress")
    assert result.exit_code == 0, result.output
    (args, kwargs), = calls
    assert args == ([Path("t.txt")],)
    assert kwargs == {"out_dir": tmp_path / "run", "resume": None, "preset": None, "progress_bar": False,
                      "overwrite": False,
                      "hidden_size": 8, "lowercase": False}
