"""The checkpoint policy: what a run's checkpoints hold, which are kept, and resuming from one.

Every evaluation writes ``last`` (the whole training state) and, when the run's metric
improved, a best checkpoint named by ``checkpoint_name``; only the ``keep_best`` newest
improvements stay, and they are also the best ones. RUN/checkpoints.json lists them, and only
files it lists are ever pruned. Rank 0 alone writes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from charlstm.config import CorpusConfig, ModelConfig, TrainConfig
from charlstm.data.prepared import PreparedData
from charlstm.errors import CheckpointError
from charlstm.runs import folder
from charlstm.runs.checkpoint import SUFFIX, load_checkpoint, save_checkpoint
from charlstm.runs.meta import CheckpointMeta, Metric, Progress
from charlstm.training.distributed import Distributed
from charlstm.training.events import Callbacks, CheckpointSaved
from charlstm.training.state import RunState

log = logging.getLogger(__name__)


class Checkpointing:
    """Saves a run's state and restores it; reads and writes only the ``RunState`` it is given."""

    def __init__(self, state: RunState, *, run_dir: Path, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, configs: tuple[ModelConfig, TrainConfig, CorpusConfig],
                 data: PreparedData, dist: Distributed, callbacks: Callbacks):
        self.state, self.run_dir, self.model, self.optimizer = state, run_dir, model, optimizer
        self.model_config, self.config, self.corpus_config = configs
        self.data, self.dist, self.callbacks = data, dist, callbacks
        self._saved_hidden: tuple[torch.Tensor, ...] | None = None  # filled by gather
        self._saved_rngs: list[torch.Tensor] | None = None

    def meta(self, metric: float | None = None) -> CheckpointMeta:
        """What a checkpoint written now records besides its tensors."""
        return CheckpointMeta(
            model_config=self.model_config, train_config=self.config, corpus_config=self.corpus_config,
            vocab=self.data.vocab.to_list(), progress=self.state.saved_progress(),
            data_sha256=self.data.sha256, last_eval=self.state.last_eval, world_size=self.dist.world_size,
            metric=None if metric is None else Metric(str(self.config.checkpoint_metric), metric),
            items=self.data.items,
        )

    def gather(self) -> None:
        """Collect every process's carried state and RNG for the next save (a collective call).

        The saved hidden state is every process's rows side by side, (L, B * world, H), so a
        resumed run hands each process its own rows back.
        """
        hidden = None if self.state.hidden is None else tuple(h.cpu() for h in self.state.hidden)
        hiddens = self.dist.gather_objects(hidden)
        self._saved_hidden = None if hidden is None else tuple(
            torch.cat(parts, dim=1) for parts in zip(*hiddens, strict=True))
        self._saved_rngs = self.dist.gather_objects(torch.get_rng_state())

    def save(self, path: Path, metric: float | None = None) -> Path | None:
        """Write a checkpoint from the state ``gather`` collected; only rank 0 writes."""
        if not self.dist.is_main:
            return None
        save_checkpoint(path, model=self.model, meta=self.meta(metric), optimizer=self.optimizer,
                        hidden=self._saved_hidden, rng_states=self._saved_rngs)
        self.callbacks.emit(CheckpointSaved(path, best=metric is not None))
        return path

    def save_last(self) -> None:
        self.save(self.run_dir / folder.LAST)

    def keep_if_best(self, metric: float | None) -> None:
        """Save a best checkpoint when ``metric`` improved on the best so far; prune old ones."""
        p, c = self.state.progress, self.config
        if metric is None or (p.best is not None and metric >= p.best):
            return
        p.best = metric
        name = c.checkpoint_name.format(epoch=p.epoch + 1, step=p.step, loss=metric) + SUFFIX
        folder.list_best(self.run_dir, name, metric)
        self.save(self.run_dir / name, metric)
        log.info("%s improved to %.4f: saved %s", c.checkpoint_metric, metric, name)
        folder.prune_best(self.run_dir, keep=c.keep_best)

    def restore(self, path: Path) -> None:
        """Put the run exactly where ``path`` left off: weights, optimizer, counters, RNG, state."""
        ckpt = load_checkpoint(path)
        meta = ckpt.meta
        if meta.vocab != self.data.vocab.to_list():
            raise CheckpointError(f"{path}: its vocabulary differs from the run's data folder")
        if meta.data_sha256 != self.data.sha256:
            raise CheckpointError(f"{path}: was trained on other data than {self.data.root}")
        if meta.world_size != self.dist.world_size:
            raise CheckpointError(
                f"{path}: trained with {meta.world_size} process(es); resume it with the same number "
                f"(now {self.dist.world_size}) so each one finds its own rows of the text"
            )
        self.model.load_state_dict(ckpt.model_state())
        optimizer_state = ckpt.optimizer_state()
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)
        state, device = self.state, self.state.epoch_sum.device
        state.progress = Progress(**vars(meta.progress))
        state.epoch_sum.fill_(state.progress.epoch_loss_sum)
        state.last_eval = meta.last_eval
        hidden = ckpt.hidden_state()
        rows = slice(self.dist.rank * self.config.batch_size, (self.dist.rank + 1) * self.config.batch_size)
        state.hidden = tuple(h[:, rows].contiguous().to(device) for h in hidden) if hidden else None
        rng = ckpt.rng_state(self.dist.rank)
        if rng is not None:
            torch.set_rng_state(rng)
