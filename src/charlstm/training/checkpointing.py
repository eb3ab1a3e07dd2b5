"""The checkpoint policy: what a run's checkpoints hold, which are kept, and resuming from one.

Every evaluation writes ``last`` (the whole training state) and, when the run's metric
improved, a best checkpoint named by ``checkpoint_name``; only the ``keep_best`` newest
improvements stay, and they are also the best ones. RUN/checkpoints.json lists them, and only
files it lists are ever pruned. Rank 0 alone writes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from charlstm.errors import CheckpointError
from charlstm.runs import folder
from charlstm.runs.checkpoint import SUFFIX, load_checkpoint, save_checkpoint
from charlstm.runs.meta import CheckpointMeta, Metric, Progress
from charlstm.training.events import CheckpointSaved

if TYPE_CHECKING:
    from charlstm.training.trainer import Trainer

log = logging.getLogger(__name__)


class Checkpointing:
    """Saves and restores one trainer's state."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self._saved_hidden: tuple[torch.Tensor, ...] | None = None  # filled by gather
        self._saved_rngs: list[torch.Tensor] | None = None

    def meta(self, metric: float | None = None) -> CheckpointMeta:
        t = self.trainer
        t.progress.epoch_loss_sum = float(t.epoch_sum)
        return CheckpointMeta(
            model_config=t.model_config, train_config=t.config, corpus_config=t.corpus_config,
            vocab=t.data.vocab.to_list(), progress=Progress(**vars(t.progress)),
            data_sha256=t.data.sha256, last_eval=t.last_eval, world_size=t.dist.world_size,
            metric=None if metric is None else Metric(str(t.config.checkpoint_metric), metric),
        )

    def gather(self) -> None:
        """Collect every process's carried state and RNG for the next save (a collective call).

        The saved hidden state is every process's rows side by side, (L, B * world, H), so a
        resumed run hands each process its own rows back.
        """
        t = self.trainer
        hidden = None if t.hidden is None else tuple(h.cpu() for h in t.hidden)
        hiddens = t.dist.gather_objects(hidden)
        self._saved_hidden = None if hidden is None else tuple(
            torch.cat(parts, dim=1) for parts in zip(*hiddens, strict=True))
        self._saved_rngs = t.dist.gather_objects(torch.get_rng_state())

    def save(self, path: Path, metric: float | None = None) -> Path | None:
        """Write a checkpoint from the state ``gather`` collected; only rank 0 writes."""
        t = self.trainer
        if not t.dist.is_main:
            return None
        save_checkpoint(path, model=t.model, meta=self.meta(metric), optimizer=t.optimizer,
                        hidden=self._saved_hidden, rng_states=self._saved_rngs)
        t.callbacks.emit(CheckpointSaved(path, best=metric is not None))
        return path

    def save_last(self) -> None:
        self.save(self.trainer.run_dir / folder.LAST)

    def keep_if_best(self, metric: float | None) -> None:
        """Save a best checkpoint when ``metric`` improved on the best so far; prune old ones."""
        t = self.trainer
        p, c = t.progress, t.config
        if metric is None or (p.best is not None and metric >= p.best):
            return
        p.best = metric
        name = c.checkpoint_name.format(epoch=p.epoch + 1, step=p.step, loss=metric) + SUFFIX
        folder.list_best(t.run_dir, name, metric)
        self.save(t.run_dir / name, metric)
        log.info("%s improved to %.4f: saved %s", c.checkpoint_metric, metric, name)
        folder.prune_best(t.run_dir, keep=c.keep_best)

    def restore(self, path: Path) -> None:
        """Put the trainer exactly where ``path`` left off: weights, optimizer, counters, RNG, state."""
        t = self.trainer
        ckpt = load_checkpoint(path)
        meta = ckpt.meta
        if meta.vocab != t.data.vocab.to_list():
            raise CheckpointError(f"{path}: its vocabulary differs from the run's data folder")
        if meta.data_sha256 != t.data.sha256:
            raise CheckpointError(f"{path}: was trained on other data than {t.data.root}")
        if meta.world_size != t.dist.world_size:
            raise CheckpointError(
                f"{path}: trained with {meta.world_size} process(es); resume it with the same number "
                f"(now {t.dist.world_size}) so each one finds its own rows of the text"
            )
        t.model.load_state_dict(ckpt.model_state())
        optimizer_state = ckpt.optimizer_state()
        if optimizer_state is not None:
            t.optimizer.load_state_dict(optimizer_state)
        t.progress = Progress(**vars(meta.progress))
        t.epoch_sum.fill_(t.progress.epoch_loss_sum)
        t.last_eval = meta.last_eval
        hidden = ckpt.hidden_state()
        rows = slice(t.dist.rank * t.config.batch_size, (t.dist.rank + 1) * t.config.batch_size)
        t.hidden = tuple(h[:, rows].contiguous().to(t.device) for h in hidden) if hidden else None
        rng = ckpt.rng_state(t.dist.rank)
        if rng is not None:
            torch.set_rng_state(rng)
