"""Beam search: the most likely continuation, not a draw.

``width`` hypotheses are kept at each step, each with its own LSTM state (a row of the batch);
every step extends each by every character and keeps the ``width`` best by total
log-probability. A hypothesis ends when ``finished`` says so (a stop sequence, an item's end
symbol) and is set aside; those and the ones still going at ``length`` are ranked by their mean
log-probability per character (length-normalised: otherwise a search prefers whatever ends
soonest). Width 1 is greedy decoding. Stream models only: each hypothesis is one carried state.

The search is exact to its width, so it cannot be batched with other requests' sampling; the
service runs it on its per-request path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from charlstm.config.sample import SampleConfig
from charlstm.errors import ConfigError
from charlstm.generation.prompts import prompt_ids
from charlstm.generation.sampling import RepeatPenalty
from charlstm.generation.stops import check_stops
from charlstm.model.network import CharLSTM, evaluating, prime
from charlstm.runs.loading import LoadedModel

MAX_WIDTH = 64


@dataclass(frozen=True)
class Hypothesis:
    ids: tuple[int, ...]  # the continuation, its ending character included
    logprob: float  # natural log-probability of ``ids`` under the model, given the prompt
    ended: bool  # ``finished`` said so (else it reached the length)

    @property
    def score(self) -> float:
        """Mean log-probability per character: what the hypotheses are ranked by in the end."""
        return self.logprob / max(1, len(self.ids))


def check_width(width: int) -> None:
    if not 1 <= width <= MAX_WIDTH:
        raise ConfigError(f"beam width must be 1 to {MAX_WIDTH}, not {width}")


@torch.inference_mode()
def beam_search(
    model: CharLSTM, prompt: torch.Tensor, width: int, length: int, *,
    finished: Callable[[Sequence[int]], bool] = lambda ids: False,
    repeat: RepeatPenalty | None = None, best: int = 1, ended_first: bool = False,
) -> list[Hypothesis]:
    """The ``best`` hypotheses (best first) after a (P,) ``prompt``, each at most ``length`` long.

    ``finished(ids)``: whether a continuation ends with its last character. ``repeat``: the DRY
    penalty, applied to each hypothesis's logits (prompt included in its history) before the
    log-softmax, so the search avoids the loops it is otherwise prone to. ``ended_first``: every
    ended hypothesis ranks above every one cut at ``length`` (an item that never ends is no item,
    however likely its characters: a loop such as "saurusaurus..." is).
    """
    check_width(width)
    if not 1 <= best <= width:
        raise ConfigError(f"a beam of {width} returns 1 to {width} continuations, not {best}")
    with evaluating(model):
        device = model.head.weight.device
        logits, state = prime(model, prompt[None].to(device))  # (1, V)
        tail = prompt[-RepeatPenalty.WINDOW:].tolist() if repeat is not None else []
        live: list[Hypothesis] = [Hypothesis((), 0.0, False)]
        done: list[Hypothesis] = []
        for _ in range(length):
            logits = logits.float()
            if repeat is not None:
                logits = repeat.apply(logits, [tail + list(h.ids) for h in live])
            totals = logits.log_softmax(-1) + torch.tensor([h.logprob for h in live], device=device)[:, None]
            # Twice the width: enough that ``width`` go on even if many of the best end here.
            top = torch.topk(totals.flatten(), min(2 * width, totals.numel()))
            vocab = totals.shape[-1]
            keep_rows, keep_ids, going = [], [], []
            for value, flat in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                row, next_id = divmod(flat, vocab)
                hypothesis = Hypothesis((*live[row].ids, next_id), value, False)
                if finished(hypothesis.ids):
                    done.append(Hypothesis(hypothesis.ids, value, True))
                elif len(going) < width:
                    going.append(hypothesis)
                    keep_rows.append(row)
                    keep_ids.append(next_id)
            live = going
            if not live or _settled(done, live, width, length):
                break
            rows = torch.tensor(keep_rows, device=device)
            state = tuple(s[:, rows] for s in state)  # (L, width, H): each survivor's parent's state
            out, state = model(torch.tensor(keep_ids, device=device)[:, None], state)
            logits = out[:, -1]  # (width, V)
    ranked = sorted(done + live, key=lambda h: (ended_first and h.ended, h.score), reverse=True)
    return ranked[:best]


def _settled(done: list[Hypothesis], live: list[Hypothesis], width: int, length: int) -> bool:
    """Whether no live hypothesis can still beat the ``width``-th ended one.

    A hypothesis's log-probability only falls as it grows, so its mean can at best be its
    total spread over the longest it may become.
    """
    if len(done) < width:
        return False
    bar = sorted((h.score for h in done), reverse=True)[width - 1]
    return all(h.logprob / length < bar for h in live)


@dataclass(frozen=True)
class BeamText:
    text: str  # the continuation, its stop sequence left out
    logprob: float  # of the continuation as searched (its stop sequence included), nats
    chars: int  # characters scored, the stop sequence included
    finish_reason: str  # "stop" (a stop sequence) or "length"


def generate_beam(loaded: LoadedModel, prompt: str | None, config: SampleConfig,
                  stops: Sequence[str] = ()) -> tuple[str, list[BeamText]]:
    """The prompt used and the ``config.num_samples`` best continuations of a beam of ``config.beam``.

    A continuation that ends with a stop sequence ends there (the stop sequence is left out of
    its text, as in sampling); the others run ``config.length`` characters.
    """
    if not loaded.framing.carries_state:
        raise ConfigError("beam search keeps each hypothesis as one carried state: it needs a stream "
                          "model (a window model re-reads its window for every character)")
    stops = check_stops(stops)
    seed = config.seed if config.seed is not None else 0  # only a missing prompt draws anything
    prompt_text, ids = prompt_ids(loaded, prompt, config, seed)
    decode = loaded.vocab.decode

    def finished(ids: Sequence[int]) -> bool:
        return bool(stops) and any(decode(list(ids[-len(s):])).endswith(s) for s in stops)

    found = beam_search(loaded.model, torch.from_numpy(ids), config.beam or 1, config.length,
                        finished=finished, repeat=RepeatPenalty.of(config), best=config.num_samples)
    texts = []
    for h in found:
        text = decode(list(h.ids))
        if h.ended:
            text = text[: len(text) - max(len(s) for s in stops if text.endswith(s))]
        texts.append(BeamText(text, h.logprob, len(h.ids), "stop" if h.ended else "length"))
    return prompt_text, texts
