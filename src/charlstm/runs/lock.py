"""One process owns a run folder at a time: RUN/.lock, held with an operating-system lock.

Two trainings writing one folder interleave metrics.jsonl and mix one run's checkpoints with
the other's data, so a training (new, resumed or ``--overwrite``) holds the folder's lock
while it starts and trains. The lock is the kernel's (``flock``, ``LockFileEx`` on Windows),
not the file's existence: a process that dies, even by kill -9, lets it go, so a stale lock
is never left to clear by hand. The file itself only names the holder for the message the
next process shows; it stays in the folder (deleting it could let two processes lock two
different files of the same name).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from charlstm.errors import CheckpointError

LOCK_FILE = ".lock"


class RunInUseError(CheckpointError):
    """Another process holds the run folder."""


class RunLock:
    """The lock of one run folder; ``acquire`` takes it or says who has it."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Take the lock (a no-op when held); ``RunInUseError`` names the holder when another has it."""
        if self._fd is not None:
            return self
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)  # never a file outside the run
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise CheckpointError(f"{self.path}: cannot create the run's lock ({exc.strerror})") from None
        if not _try_lock(fd):
            holder = _read_holder(fd)
            os.close(fd)
            raise RunInUseError(f"{self.path.parent} is in use by {holder}; wait for it to end or stop it",
                                hint="one training, resume or --overwrite per run folder at a time")
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(_me()) + "\n").encode("utf-8"))
        self._fd = fd
        return self

    def release(self) -> None:
        """Let the lock go (closing the file releases the kernel's lock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _me() -> dict[str, object]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(["charlstm", *sys.argv[1:]])[:300]}


def _read_holder(fd: int) -> str:
    """Who holds the lock, from what it wrote (it may be writing it still: then 'another process')."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return (f"process {int(holder['pid'])} on {holder['host']} ({holder['command']}, "
                f"since {holder['since']})")
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return "another process"


if sys.platform == "win32":  # pragma: no cover - the CI runs on Linux
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
