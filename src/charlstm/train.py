"""Training: TrainConfig, the loop, evaluation schedule, checkpoint policy, resume."""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from charlstm import runs
from charlstm.checkpoint import SUFFIX, load_checkpoint, save_checkpoint
from charlstm.corpus import CorpusConfig
from charlstm.data import PreparedData, StreamBatches, WindowBatches
from charlstm.errors import CheckpointError, ConfigError, TrainingDivergedError
from charlstm.evaluate import EvalResult, evaluate
from charlstm.generate import SampleConfig, continue_ids, make_generator
from charlstm.model import CharLSTM, ModelConfig, char_loss, detach_state
from charlstm.seeding import resolve_device, seed_everything

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained; the ``default`` preset's values are the defaults here."""

    framing: str = "stream"  # stream: loss on every position, state carried; window: tutorial
    seq_len: int = 128  # T: BPTT length (stream) or window length (window)
    batch_size: int = 32  # B: parallel streams or windows per step
    epochs: int | None = 50  # whichever of epochs / max_steps / time_budget comes first
    max_steps: int | None = None
    time_budget: float | None = None  # seconds of wall clock for this invocation
    optimizer: str = "adamw"  # adam | adamw
    lr: float = 3e-3
    beta2: float = 0.99  # char models see few tokens per step; 0.99 adapts faster than 0.999
    adam_eps: float = 1e-8
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # max gradient norm; 0 turns clipping off
    lr_schedule: str = "cosine"  # cosine: warmup then decay over the run's budget; constant
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1  # cosine ends at lr * min_lr_ratio
    val_fraction: float = 0.1  # the last 10% of the text is held out
    test_fraction: float = 0.0
    eval_every: int = 200  # steps between evaluations; 0: at epoch ends only
    eval_max_chars: int | None = None  # cap on scored held-out characters per evaluation
    checkpoint_metric: str = "val_loss"  # val_loss | train_loss (epoch mean, as Keras's `loss`)
    checkpoint_name: str = "best-{epoch:02d}-{step:06d}-{loss:.4f}"  # fields: epoch, step, loss
    keep_best: int = 3  # how many improvements to keep on disk
    shuffle: bool = True  # window framing: new order every epoch, as Keras's fit
    seed: int = 1337  # covers Python, NumPy and torch
    device: str = "auto"  # auto | cpu | cuda | mps
    log_every: int = 25  # steps between progress-bar updates (and NaN checks)
    sample_every: int = 0  # steps between short samples in the log, as the Keras example prints; 0: off
    sample_length: int = 200

    def __post_init__(self) -> None:
        checks = {
            "framing must be stream or window": self.framing in ("stream", "window"),
            "optimizer must be adam or adamw": self.optimizer in ("adam", "adamw"),
            "lr_schedule must be cosine or constant": self.lr_schedule in ("cosine", "constant"),
            "checkpoint_metric must be val_loss or train_loss": self.checkpoint_metric
            in ("val_loss", "train_loss"),
            "seq_len, batch_size and log_every must be positive": min(
                self.seq_len, self.batch_size, self.log_every
            )
            > 0,
            "sample_every and sample_length must be >= 0": min(self.sample_every, self.sample_length) >= 0,
            "lr must be positive": self.lr > 0,
            "keep_best must be at least 1": self.keep_best >= 1,
        }
        for message, ok in checks.items():
            if not ok:
                raise ConfigError(message)
        for name in ("epochs", "max_steps", "time_budget", "eval_max_chars"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be positive")


# Settings a resumed run may change: when to stop, where to run, how often to report.
RESUMABLE_FIELDS = {
    "epochs", "max_steps", "time_budget", "device", "eval_every", "log_every", "keep_best", "sample_every",
    "sample_length",
}
SAMPLE_TEMPERATURES = (0.2, 0.5, 1.0)


@dataclass
class Progress:
    """Counters that locate a run exactly; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0  # the epoch in progress, from 0
    batch: int = 0  # the next batch of that epoch
    epoch_loss_sum: float = 0.0  # sum over the epoch's samples, for its mean training loss
    epoch_samples: int = 0
    best: float | None = None


@dataclass
class TrainResult:
    run_dir: Path
    progress: Progress
    stop_reason: str
    last_eval: dict[str, Any] = field(default_factory=dict)


def lr_factor(config: TrainConfig, step: int, budget_fraction: float) -> float:
    """Multiplier of ``config.lr`` at ``step``; ``budget_fraction`` is how much of the run is spent."""
    if config.lr_schedule == "constant":
        return 1.0
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, budget_fraction)))
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine


def make_optimizer(model: CharLSTM, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]  # Keras presets freeze bias_hh
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(
        params, lr=config.lr, betas=(0.9, config.beta2), eps=config.adam_eps,
        weight_decay=config.weight_decay,
    )


LOG_FILE = "train.log"


@contextmanager
def run_log(path: Path):
    """Copy this package's log records (INFO and up) into the run folder while training."""
    logger = logging.getLogger("charlstm")
    handler = logging.FileHandler(path, encoding="utf-8")
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


class Trainer:
    """Owns one run's model, optimizer, data and counters."""

    def __init__(
        self, run_dir: Path, data: PreparedData, model_config: ModelConfig,
        train_config: TrainConfig, corpus_config: CorpusConfig, *, progress_bar: bool = True,
    ):
        self.run_dir, self.data, self.config = run_dir, data, train_config
        self.model_config, self.corpus_config = model_config, corpus_config
        self.device = resolve_device(train_config.device)
        self.progress_bar = progress_bar
        self.stop_requested = threading.Event()  # Ctrl-C, or another thread, asks to stop
        self.clock = time.perf_counter  # replaceable, e.g. by a benchmark that pauses it to score
        seed_everything(train_config.seed)
        self.model = CharLSTM(model_config).to(self.device)
        self.optimizer = make_optimizer(self.model, train_config)
        self.progress = Progress()
        self.hidden: tuple[torch.Tensor, ...] | None = None
        # Summed on the device: reading a loss every step would sync the GPU.
        self.epoch_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        train_ids = data.split("train")
        c = train_config
        if c.framing == "stream":
            self.batches: StreamBatches | WindowBatches = StreamBatches(train_ids, c.batch_size, c.seq_len)
        else:
            self.batches = WindowBatches(train_ids, c.batch_size, c.seq_len, c.seed, c.shuffle)
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
        }
        if metric is not None:
            meta["metric"] = {"name": self.config.checkpoint_metric, "value": metric}
        return meta

    def save(self, path: Path, metric: float | None = None) -> Path:
        return save_checkpoint(
            path, model=self.model, meta=self._meta(metric), optimizer=self.optimizer,
            hidden=self.hidden,
        )

    def restore(self, path: Path) -> None:
        ckpt = load_checkpoint(path)
        if ckpt.meta["vocab"] != self.data.vocab.to_list():
            raise CheckpointError(f"{path}: its vocabulary differs from the run's data folder")
        if ckpt.meta.get("data_sha256") != self.data.meta["sha256"]:
            raise CheckpointError(f"{path}: was trained on other data than {self.data.root}")
        self.model.load_state_dict(ckpt.model_state())
        optimizer_state = ckpt.optimizer_state()
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)
        self.progress = Progress(**ckpt.meta["progress"])
        self.epoch_sum.fill_(self.progress.epoch_loss_sum)
        self.last_eval = ckpt.meta.get("last_eval", {})
        hidden = ckpt.hidden_state()
        self.hidden = tuple(h.to(self.device) for h in hidden) if hidden else None
        rng = ckpt.rng_state()
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
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if self.config.framing == "stream":
            if self.hidden is None:
                self.hidden = self.model.init_state(x.shape[0], self.device)
            logits, hidden = self.model(x, self.hidden)  # (B, T, V)
            self.hidden = detach_state(hidden)
            loss = char_loss(logits, y)
        else:
            logits, _ = self.model(x)  # (B, T, V); the tutorial predicts after the window only
            loss = char_loss(logits[:, -1], y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return loss.detach()

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
            record["epoch_train_loss"] = float(self.epoch_sum) / p.epoch_samples
        self.check_finite(recent_loss)
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

    def should_stop(self, start: float, interrupt: threading.Event) -> str | None:
        c, p = self.config, self.progress
        if interrupt.is_set():
            return "interrupted"
        if c.max_steps is not None and p.step >= c.max_steps:
            return "max_steps"
        if c.epochs is not None and p.epoch >= c.epochs:
            return "epochs"
        if c.time_budget is not None and self.clock() - start >= c.time_budget:
            return "time_budget"
        return None

    def fit(self) -> TrainResult:
        """Train until a limit or Ctrl-C; always leaves ``last`` up to date; logs to RUN/train.log."""
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
                    if window_steps >= c.log_every or eval_due:
                        recent = float(window_sum) / window_steps
                        if not math.isfinite(recent):
                            self.check_finite(recent)
                        rate = window_steps * chars_per_step / (self.clock() - window_start)
                        bar.set_postfix(epoch=p.epoch + 1, loss=f"{recent:.3f}", chars_s=f"{rate:,.0f}")
                        bar.update(window_steps)
                        window_sum.zero_()
                        window_steps, window_start = 0, self.clock()
                    if c.sample_every and p.step % c.sample_every == 0:
                        self.log_samples()
                    if eval_due:
                        self.report(recent, epoch_end, self.clock() - start)
                    if epoch_end:
                        p.epoch, p.batch, p.epoch_samples = p.epoch + 1, 0, 0
                        self.epoch_sum.zero_()
                    reason = self.should_stop(start, interrupt)
                    if reason:
                        break
        bar.close()
        if self.last_eval_step != p.step:
            recent = float(window_sum) / window_steps if window_steps else None
            self.report(recent, False, self.clock() - start)
        else:
            self.save(self.run_dir / runs.LAST)  # counters moved on at the epoch's end
        log.info("stopped after step %d (%s)", p.step, reason)
        return TrainResult(self.run_dir, p, reason or "", self.last_eval)


def config_record(model: ModelConfig, train: TrainConfig, corpus: CorpusConfig, **extra: Any) -> dict:
    return {"model": asdict(model), "train": asdict(train), "corpus": asdict(corpus), **extra}


def replace_known(config: Any, overrides: dict[str, Any]) -> Any:
    """``dataclasses.replace`` with the overrides that name a field of ``config``."""
    names = {f.name for f in fields(config)}
    return type(config)(**{**asdict(config), **{k: v for k, v in overrides.items() if k in names}})
