"""Helpers for the serve tests: one tiny trained run per session, a real server, slow steps.

Plain functions, not fixtures, so each test file scopes its own fixtures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from _runs import TINY_MODEL, train_stream_run, write_text

_RUNS: dict[object, Path] = {}  # one run per test session (its tmp_path_factory), shared by the serve tests
NAMES = [f"{a}{b}{c}saurus" for a in "bcdfgk" for b in "aeiou" for c in "lmnr"]  # 120 made-up names


def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stream run trained for a few steps, with evaluations (so it has best bits/char); made once."""
    key = id(tmp_path_factory)
    if key not in _RUNS:
        root = tmp_path_factory.mktemp("serve-run")
        _RUNS[key] = train_stream_run(root / "tiny", write_text(root / "text.txt"))
    return _RUNS[key]


def tiny_items_run(tmp_path_factory: pytest.TempPathFactory, *, labelled: bool = False) -> Path:
    """A records run: NAMES one a line, or as csv labelled "big" (b, c, d...) or "small"; made once."""
    from charlstm.training import session as api

    key = (id(tmp_path_factory), labelled)
    if key not in _RUNS:
        root = tmp_path_factory.mktemp("serve-items")
        settings = {**TINY_MODEL, "batch_size": 8, "max_steps": 80 if labelled else 40, "eval_every": 20,
                    "lr": 1e-2}
        if labelled:
            rows = [f"{name},{'big' if name[0] in 'bcd' else 'small'}" for name in NAMES]
            (root / "names.csv").write_text("name,size\n" + "\n".join(rows) + "\n", encoding="utf-8")
            api.train([root / "names.csv"], out_dir=root / "run", records="csv", text_column="name",
                      label_column="size", **settings)
        else:
            (root / "names.txt").write_text("\n".join(sorted(NAMES)) + "\n", encoding="utf-8")
            api.train([root / "names.txt"], out_dir=root / "run", records="lines", **settings)
        _RUNS[key] = root / "run"
    return _RUNS[key]


@contextmanager
def running_server(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


class SlowSteps:
    """Generation at ``delay`` seconds a step, counted: the batched scheduler's and the per-request path's.

    Tiny models write thousands of characters a second, too fast to stop mid-stream on purpose.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, delay: float):
        from charlstm.serve import scheduler, worker

        self.delay, self.steps = delay, 0
        advance, continue_ids = scheduler.Scheduler._advance, worker.continue_ids

        def slow_advance(sched, ids, n):
            self._tick()
            return advance(sched, ids, n)

        def slow_continue(*args, **kwargs):
            for step in continue_ids(*args, **kwargs):
                self._tick()
                yield step

        monkeypatch.setattr(scheduler.Scheduler, "_advance", slow_advance)
        monkeypatch.setattr(worker, "continue_ids", slow_continue)

    def _tick(self) -> None:
        time.sleep(self.delay)
        self.steps += 1


def wait_until(condition, timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Poll ``condition()`` until it is true or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True
