"""Writing and deleting inside a run folder without ever following a symbolic link out of it.

A run folder is the user's to arrange, and a link in it (``metrics.jsonl`` pointing at their
notes, ``data`` at a corpus) must never make a run write or delete someone else's file. Every
write and delete of a run's own files goes through these: appends open with ``O_NOFOLLOW``,
whole files are replaced by a rename (which replaces a link, not its target), and a link
is removed as a link.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from charlstm.errors import CheckpointError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def open_own(path: Path) -> BinaryIO:
    """``path`` opened to read, write and append (created if missing); refused if it is a link."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP or path.is_symlink():
            raise CheckpointError(f"{path} is a symbolic link; a run writes only files of its own: "
                                  "remove the link (or copy the file in its place)") from None
        raise
    return os.fdopen(fd, "r+b")


def plain_mode() -> int:
    """The mode ``open`` gives a new file here (0o666 less the umask): temporary files get 0o600."""
    umask = os.umask(0o022)  # reading the umask means setting it; put straight back
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` at once: a reader sees the old file or the new, never half.

    The rename replaces a link at ``path`` itself, never the file it points to.
    """
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, plain_mode())  # as a plain write would leave it, not mkstemp's 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_own(path: Path) -> None:
    """Delete a run's file or folder; a link is removed as a link, its target left alone."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
