"""TensorBoard curves and samples for a run, in RUN/tensorboard/, when ``tensorboard`` is set.

A subscriber to the trainer's events, like the progress bar: it writes the training loss,
bits/char, learning rate and speed at each log point, the held-out loss and bits/char at each
evaluation, and the ``sample_every`` samples as text. TensorBoard is an optional extra,
imported only when asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from charlstm.errors import CheckpointError, ConfigError
from charlstm.model.loss import bits_per_char
from charlstm.training.events import Callbacks, LogPoint, ReportEnd, RunEnd, RunStart, SampleLogged

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

TENSORBOARD_DIR = "tensorboard"


def summary_writer_class() -> type[SummaryWriter]:
    """torch's SummaryWriter, or a ConfigError naming the extra to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises it when the tensorboard package is missing
        raise ConfigError(
            "tensorboard is set but the tensorboard package is not installed: "
            "pip install 'charlstm[tensorboard]'") from None
    return SummaryWriter


class TensorBoardLogger:
    """Writes a run's scalars and samples to RUN/tensorboard/ (rank 0 only)."""

    def __init__(self, run_dir: Path):
        self.log_dir = run_dir / TENSORBOARD_DIR
        self.writer_class = summary_writer_class()
        self.writer: SummaryWriter | None = None

    def subscribe(self, callbacks: Callbacks) -> None:
        on = callbacks.on
        on(RunStart, self._open)
        on(LogPoint, self._log_point)
        on(ReportEnd, self._report_end)
        on(SampleLogged, self._sample)
        on(RunEnd, self._close)

    def _open(self, event: RunStart) -> None:
        # A resumed run redoes every step after its checkpoint: purge_step drops what an earlier
        # invocation wrote from the first step this one takes, so no step appears twice.
        purge_step = event.step + 1 if event.step else None
        if self.log_dir.is_symlink():  # its event files, and the purge, would land in the link's target
            raise CheckpointError(f"{self.log_dir} is a symbolic link; a run writes only files of its own: "
                                  "remove the link")
        self.writer = self.writer_class(log_dir=str(self.log_dir), purge_step=purge_step)

    def _log_point(self, event: LogPoint) -> None:
        assert self.writer is not None
        self.writer.add_scalar("loss/train", event.loss, event.step)
        self.writer.add_scalar("bits_per_char/train", bits_per_char(event.loss), event.step)
        self.writer.add_scalar("lr", event.lr, event.step)
        self.writer.add_scalar("chars_per_s", event.chars_per_s, event.step)

    def _report_end(self, event: ReportEnd) -> None:
        assert self.writer is not None
        if event.val is not None:
            self.writer.add_scalar("loss/val", event.val.loss, event.step)
            self.writer.add_scalar("bits_per_char/val", event.val.bits_per_char, event.step)
        # Flush with each checkpoint, so the curves on disk reach at least the step ``last`` holds.
        self.writer.flush()

    def _sample(self, event: SampleLogged) -> None:
        assert self.writer is not None
        # TensorBoard renders text as Markdown: indented, it is a code block that keeps line breaks.
        block = "\n".join("    " + line for line in event.text.splitlines())
        self.writer.add_text(f"samples/temperature_{event.temperature:g}", block, event.step)

    def _close(self, event: RunEnd) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
