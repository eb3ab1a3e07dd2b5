"""Sampling strategies and the streaming generators.

Stream-trained models generate statefully: the prompt is read once, then each
new character costs one single-step forward (O(1) per character). Window
(tutorial) models generate as the tutorial did: the last ``seq_len``
characters are re-read from a zero state for every new character.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

from charlstm.config.corpus import CorpusConfig
from charlstm.config.sample import SampleConfig
from charlstm.data.cleaning import clean_prompt
from charlstm.data.prepared import open_prepared
from charlstm.errors import CorpusError
from charlstm.generation.sampling import draw_noise, filter_logits, make_generator, sample_next
from charlstm.model.network import CharLSTM
from charlstm.model.stepper import LSTMStepper, supports_fast_steps
from charlstm.runs.folder import data_dir
from charlstm.runs.loading import LoadedModel

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

