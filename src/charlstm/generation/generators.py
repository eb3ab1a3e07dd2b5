"""The generators: a prompt in, new characters out, one step at a time.

How the model reads is its framing's (``charlstm.framing``): stream models read the
prompt once and then cost one single step per character; window (tutorial) models re-read
the last ``seq_len`` characters for every new one. What is chosen is sampling's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace

import numpy as np
import torch

from charlstm.config.sample import SampleConfig
from charlstm.errors import ConfigError
from charlstm.framing import Framing, Reader
from charlstm.generation.beam import generate_beam
from charlstm.generation.prompts import prompt_ids
from charlstm.generation.sampling import Sampler, draw_seed, sample_generators
from charlstm.generation.threads import intra_op_threads, step_threads
from charlstm.model.network import CharLSTM, evaluating, prime
from charlstm.runs.loading import LoadedModel

NOISE_BLOCK = 256  # steps of sampling noise drawn per call


@torch.inference_mode()
def continue_ids(
    model: CharLSTM, framing: Framing, prompt: torch.Tensor, config: SampleConfig,
    generator: torch.Generator | Sequence[torch.Generator],
) -> Iterator[torch.Tensor]:
    """Yield (B,) new ids per step after a (P,) prompt, read as ``framing`` reads text.

    ``generator``: one for every row, or one per row (``sample_generators``: each row's draws
    then do not depend on the others').

    The model is in eval mode meanwhile. The framing's reader does the model's side (stream:
    the prompt once, then one step per character; window: the last window re-read); this
    loop samples, with noise drawn a block of steps at a time.
    """
    with evaluating(model):
        reader = framing.reader(model, prompt, config.num_samples)
        device = model.head.weight.device
        threads = torch.get_num_threads()
        if framing.single_steps and device.type == "cpu":  # a window's re-reading is no small step
            threads = step_threads(config.num_samples, model.config.hidden_size, most=threads)
        with intra_op_threads(threads):
            yield from _sample_steps(reader, config, generator, device, prompt)


def _sample_steps(reader: Reader, config: SampleConfig,
                  generator: torch.Generator | Sequence[torch.Generator],
                  device: torch.device, prompt: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """continue_ids' loop: sample, yield, advance."""
    sampler = Sampler(config)
    next_ids = sampler.next_ids  # bound once: at batch 1 every call counts
    # Each row's text so far, which only the repetition control reads (kept only when it is on).
    tail = prompt[-sampler.repeat.WINDOW :].tolist() if sampler.repeat and prompt is not None else []
    histories = [list(tail) for _ in range(config.num_samples)] if sampler.repeat else None
    B, V = config.num_samples, reader.logits.shape[-1]
    noise_rows: Sequence[torch.Tensor | None] = [None] * NOISE_BLOCK  # greedy draws no noise
    for start in range(0, config.length, NOISE_BLOCK):
        steps = min(NOISE_BLOCK, config.length - start)
        if not sampler.greedy:  # one view per step, made once per block
            if isinstance(generator, torch.Generator):
                noise = sampler.noise(generator, steps, B, V, device)  # (steps, B, V)
            else:
                noise = torch.cat([sampler.noise(g, steps, 1, V, device) for g in generator], dim=1)
            noise_rows = noise.unbind(0)
        for t in range(steps):
            ids = next_ids(reader.logits, noise_rows[t], histories)  # (B,)
            if histories is not None:
                for history, next_id in zip(histories, ids.tolist(), strict=True):
                    history.append(next_id)
            yield ids
            reader.advance(ids)


def generate(
    loaded: LoadedModel, prompt: str | None, config: SampleConfig
) -> tuple[str, Iterator[list[str]]]:
    """The prompt used and an iterator of new characters, one list (one per sample) a step."""
    device = loaded.model.head.weight.device
    seed = config.seed if config.seed is not None else draw_seed()
    prompt_text, ids = prompt_ids(loaded, prompt, config, seed)
    generators = sample_generators(seed, config.num_samples, device)
    steps = continue_ids(loaded.model, loaded.framing, torch.from_numpy(ids), config, generators)
    chars = loaded.vocab.chars
    return prompt_text, ([chars[i] for i in step.tolist()] for step in steps)


def generate_text(loaded: LoadedModel, prompt: str | None = None, **settings) -> list[str]:
    """Generate whole samples (prompt excluded); ``settings`` are SampleConfig fields."""
    config = SampleConfig(**settings)
    if config.beam is not None:
        return [found.text for found in generate_beam(loaded, prompt, config)[1]]
    if config.best_of > 1:
        return generate_best_of(loaded, prompt, config)[1]
    _, steps = generate(loaded, prompt, config)
    return collect_samples(steps, config.num_samples)


def collect_samples(steps: Iterable[list[str]], num_samples: int,
                    stop: Callable[[], bool] | None = None) -> list[str]:
    """Gather ``generate``'s steps into whole samples; ``stop()`` true ends them early."""
    samples: list[list[str]] = [[] for _ in range(num_samples)]
    for step in steps:
        for sample, ch in zip(samples, step, strict=True):
            sample.append(ch)
        if stop is not None and stop():
            break
    return ["".join(s) for s in samples]


# Best of K: draw K continuations for each sample and keep the one the model finds most likely:
# the mean log-probability per character of the continuation under the model itself
# (temperature 1, no filter), given the prompt, as OpenAI's best_of chooses. Draw j of sample i
# is the library's sample i * K + j of the same seed: the draws generate_text makes with
# num_samples = n * K.


def generate_best_of(loaded: LoadedModel, prompt: str | None, config: SampleConfig) -> tuple[str, list[str]]:
    """The prompt used and ``config.num_samples`` samples, each the best of ``config.best_of`` draws."""
    if not loaded.framing.carries_state:
        raise ConfigError("best_of scores each draw as one stream from the prompt: it needs a stream model")
    k, n = config.best_of, config.num_samples
    drawn = replace(config, num_samples=n * k, best_of=1)
    prompt_text, steps = generate(loaded, prompt, drawn)
    texts = collect_samples(steps, n * k)
    ids = torch.as_tensor(loaded.vocab.encode(prompt_text))
    scores = continuation_logprobs(loaded.model, ids, [loaded.vocab.encode(t) for t in texts])
    best = [max(range(i * k, (i + 1) * k), key=lambda j: scores[j]) for i in range(n)]
    return prompt_text, [texts[j] for j in best]


@torch.inference_mode()
def continuation_logprobs(model: CharLSTM, prompt: torch.Tensor, continuations: list) -> list[float]:
    """Mean log-probability per character of each continuation (equal lengths) after a (P,) prompt."""
    if not continuations or len(continuations[0]) == 0:
        return [0.0] * len(continuations)
    with evaluating(model):
        device = model.head.weight.device
        conts = torch.as_tensor(np.stack(continuations), dtype=torch.long, device=device)  # (R, L)
        rows = conts.shape[0]
        first, state = prime(model, prompt[None].to(device))  # (1, V): the prompt read once
        state = tuple(s.expand(-1, rows, -1).contiguous() for s in state)
        rest, _ = model(conts[:, :-1], state)  # (R, L-1, V)
        logits = torch.cat([first.float().expand(rows, -1)[:, None], rest.float()], dim=1)  # (R, L, V)
        picked = logits.log_softmax(-1).gather(-1, conts[..., None])[..., 0]  # (R, L)
    return picked.mean(dim=1).tolist()
