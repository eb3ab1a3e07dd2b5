"""docs/settings.md and `charlstm presets` are written from the config fields' help: the file in
the checkout is what the script writes, its flags are the CLI's, and the presets fit 80 columns."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import typer

from _runs import invoke
from charlstm import presets
from charlstm.cli import settings_doc
from charlstm.cli.app import app
from charlstm.cli.options import field_help

DOC = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def test_docs_settings_md_is_what_the_script_writes():
    assert DOC.read_text(encoding="utf-8") == settings_doc.settings_markdown(), (
        "docs/settings.md is stale: run `python -m charlstm.cli.settings_doc`")


def test_the_script_writes_the_file(tmp_path):
    out = tmp_path / "settings.md"
    done = subprocess.run([sys.executable, "-m", "charlstm.cli.settings_doc", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.read_text(encoding="utf-8") == settings_doc.settings_markdown()


def test_every_field_is_a_row_with_its_help():
    text = settings_doc.settings_markdown()
    for config in settings_doc.SECTIONS:
        for f in dataclasses.fields(config):
            row = next(line for line in text.splitlines() if line.startswith(f"| `{f.name}` |")
                       and field_help(config, f.name) in line)
            assert row.endswith(f"| {field_help(config, f.name)} |")


def test_the_flags_the_doc_names_are_the_clis():
    commands = typer.main.get_command(app).commands
    cli_flags = {opt for command in commands.values() for p in command.params for opt in (*p.opts,
                                                                                          *p.secondary_opts)}
    rows = [line for line in settings_doc.settings_markdown().splitlines() if line.startswith("| `")]
    named = {flag for row in rows for flag in re.findall(r"`(--[^`]+)`", row.split(" | ")[1])}
    assert len(named) > 50 and named <= cli_flags
    dynamic = {p.name.removeprefix("dynamic_") for p in commands["eval"].params
               if p.name.startswith("dynamic_")}
    assert dynamic == set(settings_doc.DYNAMIC_FLAGS)


def test_presets_fit_80_columns_and_show_every_setting():
    result = invoke("presets")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line for line in lines if len(line) > 80] == []
    assert [line.split(":")[0] for line in lines if not line.startswith(" ")] == list(presets.PRESETS)
    tutorial = result.stdout.split("\ntutorial:")[1].split("\ntutorial-large:")[0]
    for part in ("model", "train", "corpus"):
        config = getattr(presets.TUTORIAL, part)
        for f in dataclasses.fields(config):
            if f.name != "vocab_size":
                value = getattr(config, f.name)
                shown = "unset" if value is None else getattr(value, "value", value)
                assert f"{f.name} = {shown}" in tutorial, f.name
    assert "checkpoint_name = weights-improvement-{epoch:02d}-{loss:.4f}," in tutorial
