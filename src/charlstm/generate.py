"""Sampling strategies and the streaming generators.

Stream-trained models generate statefully: the prompt is read once, then each
new character costs one single-step forward (O(1) per character). Window
(tutorial) models generate as the tutorial did: the last ``seq_len``
characters are re-read from a zero state for every new character.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch

from charlstm.corpus import CorpusConfig, clean_prompt
from charlstm.data import open_prepared
from charlstm.errors import ConfigError, CorpusError
from charlstm.model import CharLSTM
from charlstm.runs import LoadedModel, data_dir
from charlstm.stepper import LSTMStepper, supports_fast_steps


@dataclass(frozen=True)
class SampleConfig:
    """How the next character is chosen."""

    length: int = 500  # characters to generate after the prompt
    temperature: float = 1.0  # <1 sharper, >1 flatter
    top_k: int | None = None  # keep the k most likely characters
    top_p: float | None = None  # keep the smallest set whose probability reaches p
    greedy: bool = False  # always the most likely character (the tutorial's argmax)
    num_samples: int = 1  # samples generated together in one batch
    seed: int | None = None  # None: a fresh random seed, reported so it can be reused
    unknown: str = "error"  # prompt characters outside the vocabulary: error | drop | replace
    replacement: str | None = None  # the character "replace" maps them to

    def __post_init__(self) -> None:
        if self.length < 0 or self.num_samples < 1:
            raise ConfigError("length must be >= 0 and num_samples >= 1")
        if self.temperature <= 0:
            raise ConfigError("temperature must be positive (use --greedy for argmax)")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError("top_k must be at least 1")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ConfigError("top_p must be in (0, 1]")
        if self.unknown not in ("error", "drop", "replace"):
            raise ConfigError(f"unknown must be error, drop or replace, not {self.unknown!r}")


def filter_logits(logits: torch.Tensor, config: SampleConfig) -> torch.Tensor:
    """Scale by temperature and mask what top-k / top-p exclude (to -inf); (B, V) -> (B, V).

    May return ``logits`` itself (temperature 1, no filter): do not write into the result.
    """
    logits = logits.float()
    if config.temperature != 1.0:
        logits = logits / config.temperature
    if config.top_k is not None and config.top_k < logits.shape[-1]:
        kth = torch.topk(logits, config.top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if config.top_p is not None and config.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a character once the ones before it already reach top_p; the first always stays.
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= config.top_p
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    return logits


def draw_noise(generator: torch.Generator, steps: int, rows: int, vocab: int, config: SampleConfig,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """Sampling noise for ``steps`` steps at once, (steps, rows, vocab): ``T * log E``, E ~ Exp(1).

    Drawn for many steps at once it costs one call instead of one per step, and the random
    stream is the same as drawing step by step (the generators fill tensors in order).
    """
    noise = torch.empty(steps, rows, vocab, device=device)
    if rows * vocab <= 512:
        noise.exponential_(generator=generator).log_()
    else:  # for many rows, -log(U) from vectorised uniforms beats exponential_'s scalar loop
        noise.uniform_(generator=generator).log_().neg_().log_()
    if config.top_k is None and config.top_p is None and config.temperature != 1.0:
        # argmax(l / T - log E) = argmax(l - T log E): scaling the noise spares dividing the logits.
        noise.mul_(config.temperature)
    return noise


def sample_with_noise(logits: torch.Tensor, config: SampleConfig, noise: torch.Tensor) -> torch.Tensor:
    """Pick one id per row of (B, V) logits given this step's noise from ``draw_noise``.

    Sampling is an exponential race: with E_i ~ Exp(1), argmax(log p_i - log E_i) is
    distributed as p, so no softmax, no normalisation and no ``multinomial`` call are needed.
    ``noise`` is overwritten; the logits are left as they were.
    """
    if config.greedy:
        return logits.argmax(dim=-1)
    if config.top_k is not None or config.top_p is not None:
        logits = filter_logits(logits, config)
    return torch.sub(logits, noise, out=noise).argmax(dim=-1)


@torch.no_grad()
def sample_next(logits: torch.Tensor, config: SampleConfig, generator: torch.Generator) -> torch.Tensor:
    """Pick one id per row from (B, V) logits (one step; generation loops draw noise in blocks)."""
    if config.greedy:
        return logits.argmax(dim=-1)
    noise = draw_noise(generator, 1, logits.shape[0], logits.shape[1], config, logits.device)[0]
    return sample_with_noise(logits.float(), config, noise)


def make_generator(seed: int | None, device: torch.device) -> tuple[torch.Generator, int]:
    """A seeded generator, and the seed used (drawn at random when none is given)."""
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator, seed


NOISE_BLOCK = 256  # steps of sampling noise drawn per call
SMALL_STEP = 4096  # batch x hidden size up to which generation runs torch on one thread


@contextlib.contextmanager
def intra_op_threads(count: int):
    """Run torch's CPU ops on ``count`` threads inside the block, then restore the setting."""
    before = torch.get_num_threads()
    if before != count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if before != count:
            torch.set_num_threads(before)


@torch.inference_mode()
def stream_ids(
    model: CharLSTM, prompt: torch.Tensor, config: SampleConfig, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """Yield (B,) new ids per step from a (P,) prompt, carrying the state: O(1) per character."""
    device = model.head.weight.device
    B = config.num_samples
    logits, state = model(prompt.to(device)[None, :])  # read the prompt once, batch 1
    # Every sample starts from the same prompt state, so copy it rather than re-read the prompt.
    state = tuple(s.expand(-1, B, -1).contiguous() for s in state)
    last = logits[:, -1].expand(B, -1).float()  # (B, V)
    stepper = LSTMStepper(model, state) if supports_fast_steps(model) else None
    filtered, greedy = config.top_k is not None or config.top_p is not None, config.greedy
    # A step at small batch is a few microseconds of work per op; splitting it across threads
    # costs more in hand-offs than it gains (about 7% at batch 1 on 2 cores).
    small = device.type == "cpu" and B * model.config.hidden_size <= SMALL_STEP
    with intra_op_threads(1) if small else contextlib.nullcontext():
        yield from _stream_steps(model, stepper, state, last, config, generator, filtered, greedy)


def _stream_steps(model, stepper, state, last, config, generator, filtered, greedy):
    """stream_ids' loop: sample, yield, step; noise drawn a block of steps at a time."""
    device, B = last.device, last.shape[0]
    for start in range(0, config.length, NOISE_BLOCK):
        steps = min(NOISE_BLOCK, config.length - start)
        if not greedy:  # one view per step, made once per block
            noise_rows = draw_noise(generator, steps, B, last.shape[-1], config, device).unbind(0)
        for t in range(steps):
            if greedy:
                next_ids = last.argmax(dim=-1)
            else:  # sample_with_noise, inlined: at batch 1 every call counts
                scores = filter_logits(last, config) if filtered else last
                next_ids = torch.sub(scores, noise_rows[t], out=noise_rows[t]).argmax(dim=-1)  # (B,)
            yield next_ids
            if stepper is not None:
                last = stepper.step(next_ids)  # state updated in place
            else:
                logits, state = model(next_ids[:, None], state)  # (B, 1, V)
                last = logits[:, -1]


@torch.no_grad()
def window_ids(
    model: CharLSTM, prompt: torch.Tensor, seq_len: int, config: SampleConfig,
    generator: torch.Generator,
) -> Iterator[torch.Tensor]:
    """Yield (B,) new ids per step, re-reading the last ``seq_len`` ids each time."""
    device = model.head.weight.device
    window = prompt[-seq_len:].to(device)[None, :].expand(config.num_samples, -1)  # (B, W)
    for _ in range(config.length):
        logits, _ = model(window)  # (B, W, V), from a zero state as in training
        next_ids = sample_next(logits[:, -1], config, generator)
        yield next_ids
        window = torch.cat([window[:, 1 if window.shape[1] >= seq_len else 0 :], next_ids[:, None]], 1)


def continue_ids(
    model: CharLSTM, prompt: torch.Tensor, framing: str, seq_len: int, config: SampleConfig,
    generator: torch.Generator,
) -> Iterator[torch.Tensor]:
    """New ids per step in the model's own framing; the model is put in eval mode meanwhile."""
    was_training = model.training
    model.eval()
    try:
        if framing == "window":
            yield from window_ids(model, prompt, seq_len, config, generator)
        else:
            yield from stream_ids(model, prompt, config, generator)
    finally:
        model.train(was_training)


def random_training_window(loaded: LoadedModel, rng: np.random.Generator) -> str:
    """A random window of the run's training text, as the tutorial seeds generation."""
    run_dir = loaded.run_dir
    path = data_dir(run_dir) / "train.bin" if run_dir else None
    if path is None or not path.exists():
        raise CorpusError(
            f"{loaded.path}: no prompt given and no training text beside the checkpoint "
            "to draw a seed window from; pass --prompt"
        )
    ids = open_prepared(data_dir(run_dir)).split("train")
    start = int(rng.integers(0, max(1, len(ids) - loaded.seq_len)))
    return loaded.vocab.decode(ids[start : start + loaded.seq_len])


def default_prompt(loaded: LoadedModel, seed: int) -> str:
    """No prompt given: a paragraph start for stream models, a training window for window ones."""
    if loaded.framing == "stream" and "\n" in loaded.vocab.index:
        return "\n"
    return random_training_window(loaded, np.random.default_rng(seed))


def generate(
    loaded: LoadedModel, prompt: str | None, config: SampleConfig
) -> tuple[str, Iterator[list[str]]]:
    """The prompt used and an iterator of new characters, one list (one per sample) a step."""
    device = loaded.model.head.weight.device
    generator, seed = make_generator(config.seed, device)
    if prompt:
        prompt = clean_prompt(prompt, CorpusConfig(**loaded.meta["corpus_config"]))
    else:
        prompt = default_prompt(loaded, seed)
    ids = loaded.vocab.encode(prompt, config.unknown, config.replacement)
    if len(ids) == 0:
        raise CorpusError("the prompt is empty once unknown characters are dropped")
    prompt_text = loaded.vocab.decode(ids)  # as the model reads it: cleaned, policy applied
    steps = continue_ids(loaded.model, torch.from_numpy(ids), loaded.framing, loaded.seq_len, config,
                         generator)
    chars = loaded.vocab.chars
    return prompt_text, ([chars[i] for i in step.tolist()] for step in steps)


def generate_text(loaded: LoadedModel, prompt: str | None = None, **settings) -> list[str]:
    """Generate whole samples (prompt excluded); ``settings`` are SampleConfig fields."""
    config = SampleConfig(**settings)
    _, steps = generate(loaded, prompt, config)
    samples = [[] for _ in range(config.num_samples)]
    for step in steps:
        for sample, ch in zip(samples, step, strict=True):
            sample.append(ch)
    return ["".join(s) for s in samples]


HISTORY_CHARS = 4000  # the interactive session re-reads at most this much of its text per turn


def interactive(
    loaded: LoadedModel, config: SampleConfig, read: Callable[[], str | None],
    write: Callable[[str], None],
) -> str:
    """A prompt loop: each line the user types is added to the text, which the model continues.

    ``read`` returns the next line (None at end of input); an empty line asks for more of the
    same text; ``/reset`` starts a new text; ``/quit`` ends. Returns the whole text.
    """
    text = ""
    seed = config.seed
    while (line := read()) is not None:
        if line.strip() == "/quit":
            break
        if line.strip() == "/reset":
            text = ""
            continue
        text += line
        if not text:
            continue
        # Each turn gets its own seed, derived from the session's, so a rerun repeats itself.
        turn = replace(config, num_samples=1, seed=None if seed is None else seed + len(text))
        prompt, steps = generate(loaded, text[-HISTORY_CHARS:], turn)
        text = text[: len(text) - min(len(text), HISTORY_CHARS)] + prompt
        for step in steps:
            write(step[0])
            text += step[0]
        write("\n")
    return text
