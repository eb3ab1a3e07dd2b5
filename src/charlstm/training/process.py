"""Process plumbing around a training run: its log file and Ctrl-C."""

from __future__ import annotations

import io
import logging
import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

from charlstm.runs.files import open_own

LOG_FILE = "train.log"


@contextmanager
def run_log(path: Path):
    """Copy this package's log records (INFO and up) into the run folder while training."""
    logger = logging.getLogger("charlstm")
    stream = open_own(path)
    stream.seek(0, os.SEEK_END)
    handler = logging.StreamHandler(io.TextIOWrapper(stream, encoding="utf-8", line_buffering=True))
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    previous_level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)  # the file wants INFO even when the console is quieter
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
        handler.close()
        handler.stream.close()  # a StreamHandler leaves its stream open


@contextmanager
def stop_on_sigint(flag: threading.Event):
    """First Ctrl-C sets ``flag`` so the loop stops at a step boundary; a second one aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.is_set():
            raise KeyboardInterrupt
        flag.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
