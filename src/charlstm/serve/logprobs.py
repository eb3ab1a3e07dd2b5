"""Log-probabilities of characters for OpenAI's completions API: ``logprobs`` and ``echo``.

A token is a character. Each character's log-probability (nats) is the model's raw
distribution, ``log_softmax(logits)`` at temperature 1 with nothing filtered, whatever
temperature, top_k or top_p drew it: the likelihood of the text under the model, which is what
scoring tools (lm-evaluation-harness's ``echo``, ``logprobs``, ``max_tokens: 0`` call) read.
Per choice, in OpenAI's legacy shape::

    tokens          ["t", "h", ...]                 the characters
    token_logprobs  [null, -1.2, ...]               each character given those before it; the first
                                                    character of an echoed prompt has none: null
    top_logprobs    [null, {"h": -1.2, "e": -2.0}]  the K most likely characters there, and the one
                                                    that came if it is not among them (OpenAI's
                                                    "up to logprobs + 1"); K = logprobs, 0 to 5
    text_offset     [0, 1, ...]                     each character's place in prompt + text (the
                                                    prompt as the model read it), echoed or not

How: generation is untouched. A request that asks for logprobs has its prompt and its choices'
text read again by a ``TextScorer``, as generation read them (the prompt, then the text, state
carried; a window model re-reads the last ``seq_len`` characters), on a worker thread under
``torch.inference_mode`` (never on the event loop, never on a scheduler's thread, which owns
its own state, not the weights). Streamed, each chunk's new characters are read as they come,
state carried, so the stream's logprobs are the whole reply's. One extra forward pass per choice
is about what reading a prompt costs; a request without logprobs does none of it. The scores
agree with the draws' own distributions to float rounding (a batch of another shape, ~1e-6).
"""

# No ``from __future__ import annotations``: see schemas.py.

import asyncio
import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from charlstm.config.sample import SampleConfig
from charlstm.errors import CharLSTMError
from charlstm.generation.prompts import prompt_ids
from charlstm.model.network import PRIME_CHUNK
from charlstm.runs.loading import LoadedModel
from charlstm.serve.worker import ServedModel, api_error

MAX_LOGPROBS = 5  # OpenAI's bound on ``logprobs``
WINDOW_BATCH = 256  # windows a window model re-reads per forward pass


@dataclass
class Logprobs:
    """Characters with their log-probabilities, in OpenAI's legacy completions shape."""

    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float | None] = field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = field(default_factory=list)
    text_offset: list[int] = field(default_factory=list)

    def __add__(self, other: "Logprobs") -> "Logprobs":
        return Logprobs(self.tokens + other.tokens, self.token_logprobs + other.token_logprobs,
                        self.top_logprobs + other.top_logprobs, self.text_offset + other.text_offset)

    def to_json(self) -> dict[str, list]:
        return {"tokens": self.tokens, "token_logprobs": self.token_logprobs,
                "top_logprobs": self.top_logprobs, "text_offset": self.text_offset}


class TextScorer:
    """One text read left to right as generation reads it; each ``feed`` scores what it adds.

    A model that steps one character at a time with its state carried (stream, items) reads
    a text as one forward pass from a zero state does, so the scorer carries that state from
    feed to feed. A window (tutorial) model predicts each character from the ``seq_len``
    before it (fewer at the start), re-read from a zero state, as its generation does.
    ``fork`` branches the reading, so a prompt read once serves each of its choices.
    """

    def __init__(self, loaded: LoadedModel, top: int):
        self.model, self.chars, self.top = loaded.model, loaded.vocab.chars, top
        self.window = None if loaded.framing.single_steps else loaded.framing.seq_len
        self.state: tuple[torch.Tensor, ...] | None = None  # a stepping model's, after what was read
        self.next: torch.Tensor | None = None  # (V,) log-probs of the next character; None before any
        self.history = np.zeros(0, dtype=np.int64)  # a window model's: every id read
        self.offset = 0  # characters read

    def fork(self) -> "TextScorer":
        return copy.copy(self)  # nothing is changed in place: the copy reads on independently

    def feed(self, ids: np.ndarray, keep: bool = True) -> Logprobs:
        """Read ``ids`` (N,); their logprobs (``keep`` False: only read them, for what follows)."""
        if len(ids) == 0:
            return Logprobs()
        with torch.inference_mode():
            if self.window is None:
                predicted = self._step_through(ids)
            else:
                predicted = self._windows(ids) if keep else None
                self.history = np.concatenate([self.history, ids])
        first = self.offset
        self.offset += len(ids)
        if not keep:
            return Logprobs()
        return self._logprobs(ids, predicted, first)

    def _step_through(self, ids: np.ndarray) -> torch.Tensor:
        """(N, V) log-probs predicting each id (row 0 unused with no context), state carried."""
        device = self.model.head.weight.device
        rows = [] if self.next is None else [self.next[None]]
        for start in range(0, len(ids), PRIME_CHUNK):  # bounded memory, as ``prime`` reads
            chunk = torch.from_numpy(ids[start : start + PRIME_CHUNK])[None].to(device)  # (1, C)
            logits, self.state = self.model(chunk, self.state)  # (1, C, V)
            rows.append(logits[0].float().log_softmax(-1))
        predicted = torch.cat(rows)  # (N + 1, V), or (N, V) with no context
        self.next = predicted[-1]
        return predicted[:-1] if len(predicted) > len(ids) else torch.cat([predicted[:1], predicted[:-1]])

    def _windows(self, ids: np.ndarray) -> torch.Tensor:
        """(N, V) log-probs predicting each id from the window before it (row 0 unused at the start)."""
        W, device = self.window, self.model.head.weight.device
        text = np.concatenate([self.history, ids])
        places = torch.arange(len(self.history), len(text))  # each new id's place in the text
        out = torch.zeros(len(ids), len(self.chars), device=device)
        early = places[(places >= 1) & (places <= W)]  # their windows begin at the text's start
        if len(early):  # all read in one pass over the text's first characters
            logits, _ = self.model(torch.from_numpy(text[: int(early[-1])])[None].to(device))  # (1, T, V)
            out[early - places[0]] = logits[0, early - 1].float().log_softmax(-1)
        late = places[places > W]
        if len(late):
            windows = torch.from_numpy(text).unfold(0, W, 1)  # (len - W + 1, W): window s is text[s : s + W]
            for at in late.split(WINDOW_BATCH):
                logits, _ = self.model(windows[at - W].to(device))  # (b, W, V), each from a zero state
                out[at - places[0]] = logits[:, -1].float().log_softmax(-1)
        return out

    def _logprobs(self, ids: np.ndarray, predicted: torch.Tensor, first: int) -> Logprobs:
        """Each id's log-prob and the top ones, from ``predicted`` (N, V); none for the text's first."""
        target = torch.from_numpy(ids).to(predicted.device)
        chosen = predicted.gather(1, target[:, None])[:, 0].tolist()
        values, indices = predicted.topk(min(self.top, predicted.shape[1]), dim=1)  # (N, K)
        tops = []
        for lp, char_id, row_values, row_ids in zip(chosen, ids.tolist(), values.tolist(), indices.tolist(),
                                                    strict=True):
            top = {self.chars[i]: v for i, v in zip(row_ids, row_values, strict=True)}
            top.setdefault(self.chars[char_id], lp)  # OpenAI's: the one that came is always there
            tops.append(top)
        result = Logprobs([self.chars[i] for i in ids.tolist()], chosen, tops,
                          list(range(first, first + len(ids))))
        if first == 0:  # nothing came before the text's first character
            result.token_logprobs[0] = result.top_logprobs[0] = None
        return result


class CompletionLogprobs:
    """A completion request's logprobs: each prompt read once, then each choice's text after it.

    Choice ``p * n + j`` reads prompt p's text; its logprobs begin with the prompt's own when
    ``echo``. The methods run the model on a worker thread.
    """

    def __init__(self, loaded: LoadedModel, prompts: list[str], n: int, top: int, echo: bool):
        self.vocab, self.n, self.echo = loaded.vocab, n, echo
        self.prompts = prompts
        self.readers = [TextScorer(loaded, top) for _ in prompts]
        self.choices: list[TextScorer] = []
        self.heads: list[Logprobs] = []  # what each choice's logprobs begin with: echo, its prompt's

    async def read_prompts(self) -> list[Logprobs]:
        """Read the prompts (first); each choice's head (echo: its prompt's logprobs, else none)."""
        return await asyncio.to_thread(self._read_prompts)

    def _read_prompts(self) -> list[Logprobs]:
        heads = [reader.feed(self.vocab.encode(prompt), keep=self.echo)
                 for reader, prompt in zip(self.readers, self.prompts, strict=True)]
        self.choices = [reader.fork() for reader in self.readers for _ in range(self.n)]
        self.heads = [heads[c // self.n] for c in range(len(self.choices))]
        return self.heads

    async def read(self, texts: list[dict[int, str]]) -> list[dict[int, Logprobs]]:
        """Read more text of some choices, in order (each {choice: new text}); the new characters'."""
        return await asyncio.to_thread(lambda: [self._feed(more) for more in texts])

    def _feed(self, texts: dict[int, str]) -> dict[int, Logprobs]:
        return {c: self.choices[c].feed(self.vocab.encode(text)) for c, text in texts.items()}

    async def whole(self, texts: list[str]) -> list[Logprobs]:
        """Each choice's logprobs, its head and then ``texts[c]``, its whole text."""
        [tails] = await self.read([dict(enumerate(texts))])
        return [head + tails[c] for c, head in enumerate(self.heads)]


def read_prompt(served: ServedModel, prompt: str, config: SampleConfig) -> str:
    """With nothing to generate: the prompt as the model reads it, as ``Service.start`` reads it
    (cleaned, unknown characters handled; an empty one: the default start, drawn with the seed)."""
    try:
        return prompt_ids(served.loaded, prompt or None, config, config.seed)[0]
    except CharLSTMError as exc:
        raise api_error(exc) from None


async def nothing_generated(prompts: int, n: int) -> AsyncIterator[list[tuple[int, str, Any]]]:
    """The events of ``prompts`` generations of ``n`` samples that end before they begin (max_tokens 0)."""
    yield [(k, "done", {"characters": 0, "finish_reasons": ["length"] * n}) for k in range(prompts)]
