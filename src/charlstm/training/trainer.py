"""Training: the loop, evaluation schedule, checkpoint policy, resume, several processes."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from charlstm.analysis.evaluate import EvalResult, evaluate
from charlstm.config.corpus import CorpusConfig
from charlstm.config.model import ModelConfig
from charlstm.config.sample import SampleConfig
from charlstm.config.train import RESUMABLE_FIELDS, TrainConfig
from charlstm.data.batches import StreamBatches, WindowBatches
from charlstm.data.prepared import PreparedData
from charlstm.errors import CheckpointError, ConfigError, TrainingDivergedError
from charlstm.generation.generators import continue_ids
from charlstm.generation.sampling import SAMPLE_TEMPERATURES, make_generator
from charlstm.model.loss import char_loss
from charlstm.model.network import CharLSTM, detach_state
from charlstm.model.runtime import resolve_device, seed_everything
from charlstm.runs import folder as runs
from charlstm.runs.checkpoint import SUFFIX, load_checkpoint, save_checkpoint
from charlstm.runs.folder import config_record
from charlstm.runs.meta import Progress
from charlstm.training.distributed import Distributed
from charlstm.training.runtime import LOG_FILE, run_log, stop_on_sigint
from charlstm.training.schedule import lr_factor, make_optimizer

__all__ = ["RESUMABLE_FIELDS", "Progress", "TrainConfig", "TrainResult", "Trainer", "config_record",
           "lr_factor", "make_optimizer"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    progress: Progress
    stop_reason: str
    last_eval: dict[str, Any] = field(default_factory=dict)


class Trainer:
    """Owns one run's model, optimizer, data and counters."""

    def __init__(
        self, run_dir: Path, data: PreparedData, model_config: ModelConfig,
        train_config: TrainConfig, corpus_config: CorpusConfig, *, progress_bar: bool = True,
        dist: Distributed | None = None,
    ):
        self.run_dir, self.data, self.config = run_dir, data, train_config
        self.model_config, self.corpus_config = model_config, corpus_config
        self.dist = dist = dist or Distributed()
        self.device = resolve_device(train_config.device)
        if dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", dist.local_rank)
        self.progress_bar = progress_bar and dist.is_main
        self.stop_requested = threading.Event()  # Ctrl-C, or another thread, asks to stop
        self.clock = time.perf_counter  # replaceable, e.g. by a benchmark that pauses it to score
        seed_everything(train_config.seed)
        self.model = CharLSTM(model_config).to(self.device)
        # ``model`` is what is saved and evaluated; ``train_model`` is what steps (DDP averages
        # its gradients across processes, and starts every process from rank 0's weights).
        self.train_model: torch.nn.Module = self.model
        if dist.enabled:
            self.train_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
            torch.manual_seed(train_config.seed + dist.rank)  # each process its own dropout masks
        self.optimizer = make_optimizer(self.model, train_config)
        # torch.compile wraps what steps; the plain module is still what is saved.
        self.step_model = torch.compile(self.train_model) if train_config.compile else self.train_model
        self.progress = Progress()
        self.hidden: tuple[torch.Tensor, ...] | None = None
        self._saved_hidden: tuple[torch.Tensor, ...] | None = None  # filled by gather_state
        self._saved_rngs: list[torch.Tensor] | None = None
        # Summed on the device: reading a loss every step would sync the GPU.
        self.epoch_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        train_ids = data.split("train")
        c = train_config
        shard = {"rank": dist.rank, "world_size": dist.world_size}
        if c.framing == "stream":
            self.batches: StreamBatches | WindowBatches = StreamBatches(
                train_ids, c.batch_size, c.seq_len, **shard)
        else:
            self.batches = WindowBatches(train_ids, c.batch_size, c.seq_len, c.seed, c.shuffle, **shard)
        self.val_ids = data.split("val")
        self.last_eval: dict[str, Any] = {}
        self.last_eval_step = -1
        if c.checkpoint_metric == "val_loss" and len(self.val_ids) <= c.seq_len:
            raise ConfigError("checkpoint_metric val_loss needs a held-out split: raise val_fraction")

    # ---- state in and out of checkpoints -------------------------------------------------

    def _meta(self, metric: float | None = None) -> dict[str, Any]:
        self.progress.epoch_loss_sum = float(self.epoch_sum)
        meta = {
            "model_config": asdict(self.model_config),
            "train_config": asdict(self.config),
            "corpus_config": asdict(self.corpus_config),
            "vocab": self.data.vocab.to_list(),
            "data_sha256": self.data.meta["sha256"],
            "progress": asdict(self.progress),
            "last_eval": self.last_eval,
            "world_size": self.dist.world_size,
        }
        if metric is not None:
            meta["metric"] = {"name": self.config.checkpoint_metric, "value": metric}
        return meta

    def gather_state(self) -> None:
        """Collect every process's carried state and RNG for the next save (a collective call).

        The saved hidden state is every process's rows side by side, (L, B * world, H), so a
        resumed run hands each process its own rows back.
        """
        hidden = None if self.hidden is None else tuple(h.cpu() for h in self.hidden)
        hiddens = self.dist.gather_objects(hidden)
        self._saved_hidden = None if hidden is None else tuple(
            torch.cat(parts, dim=1) for parts in zip(*hiddens, strict=True))
        self._saved_rngs = self.dist.gather_objects(torch.get_rng_state())

    def save(self, path: Path, metric: float | None = None) -> Path | None:
        """Write a checkpoint from the state ``gather_state`` collected; only rank 0 writes."""
        if not self.dist.is_main:
            return None
        return save_checkpoint(
            path, model=self.model, meta=self._meta(metric), optimizer=self.optimizer,
            hidden=self._saved_hidden, rng_states=self._saved_rngs,
        )

    def restore(self, path: Path) -> None:
        ckpt = load_checkpoint(path)
        if ckpt.meta["vocab"] != self.data.vocab.to_list():
            raise CheckpointError(f"{path}: its vocabulary differs from the run's data folder")
        if ckpt.meta.get("data_sha256") != self.data.meta["sha256"]:
            raise CheckpointError(f"{path}: was trained on other data than {self.data.root}")
        saved_world = ckpt.meta.get("world_size", 1)
        if saved_world != self.dist.world_size:
            raise CheckpointError(
                f"{path}: trained with {saved_world} process(es); resume it with the same number "
                f"(now {self.dist.world_size}) so each one finds its own rows of the text"
            )
        self.model.load_state_dict(ckpt.model_state())
        optimizer_state = ckpt.optimizer_state()
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)
        self.progress = Progress(**ckpt.meta["progress"])
        self.epoch_sum.fill_(self.progress.epoch_loss_sum)
        self.last_eval = ckpt.meta.get("last_eval", {})
        hidden = ckpt.hidden_state()
        rows = slice(self.dist.rank * self.config.batch_size, (self.dist.rank + 1) * self.config.batch_size)
        self.hidden = tuple(h[:, rows].contiguous().to(self.device) for h in hidden) if hidden else None
        rng = ckpt.rng_state(self.dist.rank)
        if rng is not None:
            torch.set_rng_state(rng)

    # ---- the loop --------------------------------------------------------------------------

    def budget_fraction(self, elapsed: float) -> float:
        """How much of the tightest limit is spent, for the learning-rate schedule."""
        c, p = self.config, self.progress
        parts = [0.0]
        if c.max_steps:
            parts.append(p.step / c.max_steps)
        if c.epochs:
            parts.append((p.epoch + p.batch / len(self.batches)) / c.epochs)
        if c.time_budget:
            parts.append(elapsed / c.time_budget)
        return max(parts)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":
            # Page-locked host memory lets the copy run alongside the previous step's kernels.
            x, y = x.pin_memory(), y.pin_memory()
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        with self.autocast():
            if self.config.framing == "stream":
                if self.hidden is None:
                    self.hidden = self.model.init_state(x.shape[0], self.device)
                logits, hidden = self.step_model(x, self.hidden)  # (B, T, V)
                self.hidden = detach_state(hidden)
                loss = char_loss(logits, y)
            else:
                logits, _ = self.step_model(x)  # (B, T, V); the tutorial predicts after the window only
                loss = char_loss(logits[:, -1], y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return loss.detach()

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast when asked: matmuls in bfloat16, weights, loss and optimizer in fp32."""
        if self.config.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def evaluate_val(self) -> EvalResult | None:
        c = self.config
        if len(self.val_ids) <= c.seq_len:
            return None
        return evaluate(
            self.model, self.val_ids, framing=c.framing, seq_len=c.seq_len, device=self.device,
            max_chars=c.eval_max_chars,
        )

    def report(self, recent_loss: float | None, epoch_end: bool, elapsed: float) -> None:
        """Evaluate, log a metrics line, keep the best checkpoints and write ``last``."""
        p, c = self.progress, self.config
        record: dict[str, Any] = {"step": p.step, "epoch": p.epoch + 1, "elapsed_s": round(elapsed, 2)}
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        if recent_loss is not None:
            record["train_loss"] = recent_loss
        if epoch_end and p.epoch_samples:
            record["epoch_train_loss"] = float(self.dist.mean(self.epoch_sum)) / p.epoch_samples
        self.check_finite(recent_loss)
        self.gather_state()
        if not self.dist.is_main:
            return  # rank 0 alone evaluates, logs and writes; the weights are the same everywhere
        result = self.evaluate_val()
        if result is not None:
            record.update({f"val_{k}": v for k, v in result.as_dict().items() if k != "characters"})
        metric_key = "val_loss" if c.checkpoint_metric == "val_loss" else "epoch_train_loss"
        metric = record.get(metric_key)
        self.last_eval, self.last_eval_step = record, p.step
        runs.append_metrics(self.run_dir, record)
        log.info(
            "step %d epoch %d: %s", p.step, p.epoch + 1,
            ", ".join(f"{k} {v:.4f}" for k, v in record.items() if "loss" in k or "bits" in k),
        )
        if metric is not None and (p.best is None or metric < p.best):
            p.best = metric
            name = c.checkpoint_name.format(epoch=p.epoch + 1, step=p.step, loss=metric) + SUFFIX
            self.save(self.run_dir / name, metric)
            log.info("%s improved to %.4f: saved %s", c.checkpoint_metric, metric, name)
            for _, stale in runs.best_checkpoints(self.run_dir)[c.keep_best :]:
                stale.unlink()
        self.save(self.run_dir / runs.LAST)

    def check_finite(self, recent_loss: float | None) -> None:
        """Refuse to go on (or save) once the loss or any weight is NaN or infinite."""
        sums = torch.stack([p.detach().float().sum() for p in self.model.parameters()])
        weights_ok = bool(sums.isfinite().all())
        if not weights_ok or (recent_loss is not None and not math.isfinite(recent_loss)):
            raise TrainingDivergedError(
                f"training diverged at step {self.progress.step} (loss {recent_loss}); the last good "
                f"checkpoint is kept in {self.run_dir}; try a lower --lr or --grad-clip"
            )

    def log_samples(self) -> None:
        """Log short samples at a few temperatures, from the same prompt each time, to watch progress."""
        source = self.val_ids if len(self.val_ids) > self.config.seq_len else self.data.split("train")
        prompt_len = self.config.seq_len if self.config.framing == "window" else 40
        prompt = torch.from_numpy(np.asarray(source[:prompt_len], dtype=np.int64))
        vocab = self.data.vocab
        for temperature in SAMPLE_TEMPERATURES:
            config = SampleConfig(length=self.config.sample_length, temperature=temperature, seed=0)
            generator, _ = make_generator(0, self.device)
            c = self.config
            steps = continue_ids(self.model, prompt, c.framing, c.seq_len, config, generator)
            text = vocab.decode(int(s[0]) for s in steps)
            log.info("sample at step %d, temperature %.1f:\n%s%s\n", self.progress.step, temperature,
                     vocab.decode(prompt.tolist()), text)

    def should_stop(self, start: float, interrupt: threading.Event, agree: bool = True) -> str | None:
        """Why to stop now, if at all.

        Step and epoch limits fall on the same step in every process. The clock and Ctrl-C
        do not, so with several processes they are only read when ``agree`` is set (at log
        points), where the processes compare notes and stop together.
        """
        c, p = self.config, self.progress
        if c.max_steps is not None and p.step >= c.max_steps:
            return "max_steps"
        if c.epochs is not None and p.epoch >= c.epochs:
            return "epochs"
        if self.dist.enabled and not agree:
            return None
        reason = None
        if interrupt.is_set():
            reason = "interrupted"
        elif c.time_budget is not None and self.clock() - start >= c.time_budget:
            reason = "time_budget"
        if self.dist.enabled:
            reasons = [r for r in self.dist.gather_objects(reason) if r]
            reason = reasons[0] if reasons else None
        return reason

    def fit(self) -> TrainResult:
        """Train until a limit or Ctrl-C; always leaves ``last`` up to date; logs to RUN/train.log."""
        if not self.dist.is_main:
            return self._fit()
        with run_log(self.run_dir / LOG_FILE):
            return self._fit()

    def _fit(self) -> TrainResult:
        c, p = self.config, self.progress
        start = self.clock()
        chars_per_step = c.batch_size * c.seq_len
        n_batches = len(self.batches)
        totals = [t for t in (c.max_steps, c.epochs and c.epochs * n_batches) if t]
        bar = tqdm(total=min(totals) if totals else None, initial=p.step, unit="step",
                   disable=not self.progress_bar, dynamic_ncols=True, leave=False)
        window_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        window_steps, window_start = 0, self.clock()
        reason = None
        with stop_on_sigint(self.stop_requested) as interrupt:
            reason = self.should_stop(start, interrupt)
            while reason is None:
                if c.framing == "stream" and p.batch == 0:
                    self.hidden = None  # each epoch reads the text from its start
                iterator = (self.batches.iterate(p.batch) if isinstance(self.batches, StreamBatches)
                            else self.batches.iterate(p.epoch, p.batch))
                for k, x, y in iterator:
                    factor = lr_factor(c, p.step, self.budget_fraction(self.clock() - start))
                    for group in self.optimizer.param_groups:
                        group["lr"] = c.lr * factor
                    loss = self.train_step(x, y)
                    window_sum += loss
                    self.epoch_sum += loss.double() * len(y)
                    p.epoch_samples += len(y)
                    window_steps += 1
                    p.step, p.batch = p.step + 1, k + 1
                    epoch_end = p.batch == n_batches
                    eval_due = epoch_end or bool(c.eval_every and p.step % c.eval_every == 0)
                    log_point = window_steps >= c.log_every or eval_due
                    if log_point:
                        recent = float(self.dist.mean(window_sum)) / window_steps
                        if not math.isfinite(recent):
                            self.check_finite(recent)
                        step_s = (self.clock() - window_start) / window_steps
                        if c.time_budget:  # the clock may end the run first: an ETA that says so
                            left = max(0.0, c.time_budget - (self.clock() - start)) / step_s
                            bar.total = min([*totals, p.step + round(left)])
                        bar.set_postfix(epoch=p.epoch + 1, loss=f"{recent:.3f}",
                                        chars_s=f"{chars_per_step / step_s:,.0f}")
                        bar.update(window_steps)
                        window_sum.zero_()
                        window_steps, window_start = 0, self.clock()
                    if c.sample_every and p.step % c.sample_every == 0 and self.dist.is_main:
                        self.log_samples()
                    if eval_due:
                        self.report(recent, epoch_end, self.clock() - start)
                    if epoch_end:
                        p.epoch, p.batch, p.epoch_samples = p.epoch + 1, 0, 0
                        self.epoch_sum.zero_()
                    reason = self.should_stop(start, interrupt, agree=log_point)
                    if reason:
                        break
        bar.close()
        if self.last_eval_step != p.step:
            recent = float(self.dist.mean(window_sum)) / window_steps if window_steps else None
            self.report(recent, False, self.clock() - start)
        else:
            self.gather_state()
            self.save(self.run_dir / runs.LAST)  # counters moved on at the epoch's end
        log.info("stopped after step %d (%s)", p.step, reason)
        return TrainResult(self.run_dir, p, reason or "", self.last_eval)
