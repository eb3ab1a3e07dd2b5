"""metrics.jsonl survives a kill mid-write: appends repair a partial last line, readers skip bad ones."""

from __future__ import annotations

import json
import logging

from charlstm.runs.folder import METRICS_FILE, append_metrics, read_metrics


def test_append_cuts_a_partial_last_line_instead_of_gluing_onto_it(tmp_path, caplog):
    path = tmp_path / METRICS_FILE
    path.write_text('{"step": 1, "val_loss": 2.0}\n{"step": 2, "val_lo', encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        append_metrics(tmp_path, {"step": 3, "val_loss": 1.5})
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 3]
    assert "partial last line" in caplog.text


def test_append_to_a_file_that_is_all_partial_line(tmp_path):
    (tmp_path / METRICS_FILE).write_text('{"step": 1, "val', encoding="utf-8")
    append_metrics(tmp_path, {"step": 2})
    assert read_metrics(tmp_path) == [{"step": 2}]


def test_append_to_a_whole_file_keeps_everything(tmp_path):
    for step in range(3):
        append_metrics(tmp_path, {"step": step})
    assert [r["step"] for r in read_metrics(tmp_path)] == [0, 1, 2]


def test_readers_skip_a_broken_line_with_a_warning(tmp_path, caplog):
    (tmp_path / METRICS_FILE).write_text('{"step": 1}\n{"step": 2, "val_lo\n[1, 2]\n\n{"step": 3}\n',
                                         encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert read_metrics(tmp_path) == [{"step": 1}, {"step": 3}]
    assert "line 2" in caplog.text
