"""Two CPU processes with gloo: disjoint data, one writer, a falling loss, resume rules."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from charlstm.data.prepared import open_prepared
from charlstm.errors import CheckpointError
from charlstm.framing.stream import StreamBatches
from charlstm.runs import folder as runs
from charlstm.runs.checkpoint import load_checkpoint
from charlstm.training import session as api
from charlstm.training.events import StepEnd

SETTINGS = {"hidden_size": 16, "num_layers": 1, "embedding_size": 8, "seq_len": 16, "batch_size": 4,
            "max_steps": 30, "eval_every": 10, "log_every": 5, "lr": 1e-2, "device": "cpu"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, text: str, out: str, settings: dict | None = None) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    trainer = api.start_run([text], out, overrides=settings or SETTINGS, progress_bar=False)
    seen: list[np.ndarray] = []
    trainer.callbacks.on(StepEnd, lambda event: seen.append(event.inputs.numpy().copy()))
    trainer.fit()
    np.save(Path(out).parent / f"seen-{rank}.npy", np.stack(seen))
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    text = root / "text.txt"
    rng = np.random.default_rng(0)
    words = ["alice", "rabbit", "queen", "tea", "the", "a", "said", "very", "little", "door"]
    text.write_text(" ".join(rng.choice(words, 3000)) + "\n", encoding="utf-8")
    # Gloo on this 2-core machine now and then aborts a process while the two connect (seen in
    # about 1 start of 10, within the first seconds, and with the code before the redesign
    # too): such a start is retried in a fresh folder on a fresh port; anything else fails.
    return _spawn(root, text)


def _spawn(root: Path, text: Path, settings: dict | None = None) -> Path:
    for attempt in range(3):
        run = root / f"run-{attempt}"
        try:
            mp.spawn(_worker, args=(2, _free_port(), str(text), str(run), settings), nprocs=2, join=True)
            return run
        except mp.ProcessExitedException as exc:
            if exc.signal_name != "SIGABRT" or attempt == 2:
                raise
    raise AssertionError("unreachable")


def test_each_process_reads_its_own_rows_and_together_they_read_the_whole_batch(ddp_run):
    seen = [np.load(ddp_run.parent / f"seen-{rank}.npy") for rank in (0, 1)]  # (steps, B, T)
    assert seen[0].shape == seen[1].shape == (30, 4, 16)
    single = StreamBatches(open_prepared(ddp_run / "data").split("train"), batch_size=8, seq_len=16)
    for k in range(30):
        together = np.concatenate([seen[0][k], seen[1][k]])  # rank 0's rows, then rank 1's
        np.testing.assert_array_equal(together, single.batch(k % len(single))[0].numpy())
    assert not np.array_equal(seen[0], seen[1])


def test_rank_0_alone_writes_and_the_loss_falls(ddp_run):
    records = [json.loads(line) for line in (ddp_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [10, 20, 30]  # once each, not once per process
    assert records[-1]["val_loss"] < records[0]["val_loss"]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    last = load_checkpoint(ddp_run / runs.LAST)
    assert last.meta.world_size == 2 and last.meta.progress.step == 30
    # Both processes' carried state and RNG are in it, so each can resume its own rows.
    assert [h.shape[1] for h in last.hidden_state()] == [8, 8]
    assert last.rng_state(1) is not None
    assert len(runs.best_checkpoints(ddp_run)) >= 1


def test_resuming_with_another_process_count_is_refused(ddp_run, tmp_path):
    import shutil

    copy = Path(shutil.copytree(ddp_run, tmp_path / "run"))
    with pytest.raises(CheckpointError, match="same number"):
        api.resume_run(copy)


def test_a_list_of_items_trains_on_two_processes_each_with_its_own_items(tmp_path):
    names = tmp_path / "names.txt"
    lines = [f"{a}{b}{c}saurus" for a in "bcdfgklmnp" for b in "aeiou" for c in "xy"]  # 100 names
    names.write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = {**SETTINGS, "records": "lines", "max_steps": 6, "eval_every": 3}  # 11 steps an epoch
    run = _spawn(tmp_path, names, items)
    seen = [np.load(run.parent / f"seen-{rank}.npy", allow_pickle=True) for rank in (0, 1)]
    rows = [{tuple(row) for step in part for row in step} for part in seen]
    assert rows[0] and rows[1] and not rows[0] & rows[1]  # disjoint items in every batch
    assert [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())] == [3, 6]
    assert load_checkpoint(run / runs.LAST).meta.train_config.framing == "items"
