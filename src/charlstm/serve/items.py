"""Whole items from a model trained on a list of things, drawn over the service's jobs.

For a records model a request generates items, as ``generation.items`` does: each starts from
its label's symbol (or the start symbol) and the prompt as a prefix, and ends at the end
symbol, which is never shown, or after ``length`` new characters (finish reason "length"). An
item's end is a stop sequence to the paths that generate (``jobs.ItemEnds``), so the batched
scheduler (one row per item, freed at its end) and the per-request path serve items unchanged.

A draw of k items is one Job per label among them, in the order the labels first come (the
rows of a job share their start), labelled and seeded as the library labels and seeds them::

    seed s ─► labels: the request's, taken in turn, or drawn as often as in training (rng(s))
           ─► label group g of a draw begun after d items drawn: seed sample_seed(sample_seed(s, d), g)
           ─► item r of the group: its own generator, sample_seed(that, r), as every sample's

so the items are ``generate_items``' for the same seed and settings. Where they differ, for
the service's sake: ``length`` counts new characters (``max_item_chars`` counts the prefix
too); the prefix is the prompt as the model read it (unknown characters dropped or replaced);
a start or label symbol drawn inside an item (never a training target: only a high
temperature or a barely trained model makes one likely) is not shown; new_only draws only the
items still wanted (a request holds one slot per item it asks for), where the library draws at
least 16 at a time, so new_only's items are not the library's; no log-probability is computed.
Items are listed as the library lists them, by label group: labels ["a", "b"] taken in turn
for 4 items give a, a, b, b.

new_only draws again until it has enough new items or has drawn NEW_ONLY_DRAWS x items. A
later draw that finds every slot busy waits for them, up to NEXT_DRAW_WAIT_S, then the
request ends with the items it has (``drawn`` says how many were drawn).
"""

# No ``from __future__ import annotations``: see schemas.py.

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from fastapi import Request

from charlstm.config.sample import SampleConfig
from charlstm.data.cleaning import clean_prompt
from charlstm.data.records import RESERVED
from charlstm.errors import CharLSTMError
from charlstm.generation.items import NEW_ONLY_DRAWS, ROWS, labels_for  # the library's own label draw
from charlstm.generation.sampling import sample_seed
from charlstm.serve.events import merged_events
from charlstm.serve.jobs import ApiError, Job
from charlstm.serve.worker import ServedModel, Service, api_error

NEXT_DRAW_WAIT_S = 5.0  # how long a new_only draw waits for slots another request holds
_WAIT_STEP_S = 0.1


def is_records(served: ServedModel) -> bool:
    """A model of a list of things: its requests generate items."""
    return served.loaded.meta.items is not None


@dataclass(frozen=True)
class ItemsAsk:
    """What one prompt's items are: checked, the prompt read."""

    count: int
    labels: tuple[str, ...]  # taken in turn; empty: drawn as often as in training
    new_only: bool
    prefix: str  # the prompt as the model read it
    prefix_ids: np.ndarray  # (P,)
    config: SampleConfig  # its seed set; length: new characters per item
    stops: tuple[str, ...]


def items_ask(service: Service, served: ServedModel, prompt: str, config: SampleConfig, *, count: int,
              label: str | Sequence[str] | None = None, new_only: bool = False,
              stops: tuple[str, ...] = ()) -> ItemsAsk:
    """Check an items request against its model (labels, training list, prompt); ApiError if it fails."""
    info, loaded = served.loaded.meta.items, served.loaded
    labels = () if label is None else (label,) if isinstance(label, str) else tuple(label)
    if labels and not info.labels:
        raise ApiError(422, "this model was trained without labels; leave label out", "label")
    try:
        for name in labels:
            info.symbol(name)  # an unknown label: its message lists the model's
    except CharLSTMError as exc:
        raise ApiError(422, str(exc), "label") from None
    if new_only and served.known is None:
        raise ApiError(422, "new_only needs the training list, and the checkpoint served is not in its "
                            "run folder", "new_only")
    if count > service.slots.total:  # would wait for ever
        raise ApiError(422, f"items {count} is more than the {service.slots.total} samples served at once",
                       "items")
    prefix = clean_prompt(prompt, loaded.meta.corpus_config) if prompt else ""
    if RESERVED.search(prefix):
        raise ApiError(422, "the prompt holds a control character or a private-use one (U+E000-U+F8FF), "
                            "which mark items' starts, ends and labels", "prompt")
    try:
        ids = loaded.vocab.encode(prefix, config.unknown, config.replacement)
    except CharLSTMError as exc:
        raise api_error(exc) from None
    return ItemsAsk(count, labels, new_only, loaded.vocab.decode(ids), ids, config, stops)


class ItemDraws:
    """One prompt's items: its draws, each a job per label group, and the items kept."""

    def __init__(self, service: Service, served: ServedModel, ask: ItemsAsk, loop: asyncio.AbstractEventLoop,
                 all_jobs: list[Job]):
        self.service, self.served, self.ask, self.loop = service, served, ask, loop
        self.info = served.loaded.meta.items
        self.rng = np.random.default_rng(ask.config.seed)  # the labels, as the library draws them
        self.drawn, self.new, self.characters = 0, 0, 0
        self.kept: list[dict[str, Any]] = []  # {text, label, novel, complete, new_text, finish_reason}
        self.all_jobs = all_jobs  # every job started, to stop them all however the request ends
        self.jobs: list[Job] = []  # the draw's jobs, one per label group
        self.stopped = False  # a job was cancelled (its client went, the server stops)
        self.start_draw()

    @property
    def finished(self) -> bool:
        bound = NEW_ONLY_DRAWS * self.ask.count if self.ask.new_only else self.ask.count
        return self.stopped or len(self.kept) >= self.ask.count or self.drawn >= bound

    def start_draw(self) -> None:
        """The next draw's jobs, all started or none (ApiError: 503 when the slots are busy)."""
        ask = self.ask
        want = min(ROWS, ask.count - len(self.kept))
        labels = labels_for(self.info, ask.labels, self.drawn, want, self.rng)
        draw_seed = sample_seed(ask.config.seed, self.drawn)
        jobs: list[Job] = []
        vocab = self.served.loaded.vocab
        try:
            for group, label in enumerate(dict.fromkeys(labels)):
                ids = np.concatenate([vocab.encode(self.info.symbol(label)), ask.prefix_ids])  # (1 + P,)
                rows, seed = labels.count(label), sample_seed(draw_seed, group)
                config = replace(ask.config, num_samples=rows, seed=seed)
                jobs.append(self.service.start_ids(self.served, ask.prefix, ids, config, ask.stops, self.loop,
                                                   items=True))
        except BaseException:
            for job in jobs:
                self.service.forget(job)
            raise
        self.jobs, self.groups = jobs, list(dict.fromkeys(labels))
        self.all_jobs += jobs
        self.texts = [[""] * job.config.num_samples for job in jobs]
        self.reasons: list[list[str] | None] = [None] * len(jobs)
        self.first = len(self.kept)  # without new_only, the draw's items are kept in order from here
        self.offsets = np.cumsum([0] + [job.config.num_samples for job in jobs]).tolist()

    def take(self, k: int, kind: str, payload: Any) -> list[tuple[str, Any]]:
        """Job ``k``'s event -> the prompt's events: text (its items' places; not with new_only), error."""
        if kind == "text":
            self.texts[k] = [t + d for t, d in zip(self.texts[k], payload["delta"], strict=True)]
            if not self.ask.new_only:
                delta = [""] * self.ask.count
                delta[self.first + self.offsets[k] : self.first + self.offsets[k + 1]] = payload["delta"]
                return [("text", {"delta": delta})]
        elif kind == "done":
            self.reasons[k] = payload["finish_reasons"]
            self.characters += payload["characters"]
            self.stopped |= payload["stopped"]
        elif kind == "error":
            return [("error", payload)]
        return []

    @property
    def draw_ended(self) -> bool:
        return None not in self.reasons

    def end_draw(self) -> list[tuple[str, Any]]:
        """The draw's items, kept (new_only: the new ones) in the library's order, each as an item event."""
        known, out = self.served.known, []
        for label, texts, reasons in zip(self.groups, self.texts, self.reasons, strict=True):
            for new_text, reason in zip(texts, reasons, strict=True):
                text = self.ask.prefix + new_text
                novel = None if known is None else text not in known
                self.drawn += 1
                self.new += bool(novel)
                if len(self.kept) < self.ask.count and (novel or not self.ask.new_only):
                    item = {"text": text, "label": label, "novel": novel, "complete": reason == "end",
                            "finish_reason": "stop" if reason == "end" else reason}
                    self.kept.append({**item, "new_text": new_text})
                    out.append(("item", {"index": len(self.kept) - 1, **item}))
        self.jobs = []
        return out

    def done(self) -> dict[str, Any]:
        """The prompt's done event: as a generation's, with its items, draws and new ones."""
        shown = ("text", "label", "novel", "complete")
        items = [{key: item[key] for key in shown} for item in self.kept]
        return {"characters": self.characters, "stopped": self.stopped,
                "finish_reasons": [item["finish_reason"] for item in self.kept],
                "texts": [item["new_text"] for item in self.kept], "items": items, "drawn": self.drawn,
                "new": None if self.served.known is None else self.new}


class ItemsRun:
    """The items of one or more prompts (OpenAI's list), their draws started at once (ApiError if not)."""

    def __init__(self, service: Service, served: ServedModel, asks: Sequence[ItemsAsk]):
        self.service, self.started = service, time.perf_counter()
        self.first_text_s: float | None = None
        loop = asyncio.get_running_loop()
        self.draws: list[ItemDraws] = []
        # Every job started, the later draws' too: a stream's response stops them however it ends.
        self.jobs: list[Job] = []
        try:
            for ask in asks:
                self.draws.append(ItemDraws(service, served, ask, loop, self.jobs))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for job in self.jobs:
            self.service.forget(job)

    async def events(self, request: Request) -> AsyncIterator[list[tuple[int, str, Any]]]:
        """Batches of (prompt, kind, payload) as the jobs' events come, kinds as a generation's
        (text, done, error) and ``item``; each prompt's done after its last draw. Stops quietly
        if the client goes, and after an error."""
        try:
            while True:
                places = [(p, k) for p, draws in enumerate(self.draws) for k in range(len(draws.jobs))]
                if not places:
                    return
                async for batch in merged_events(request, [self.draws[p].jobs[k] for p, k in places]):
                    out = [(places[i][0], *event) for i, kind, payload in batch
                           for event in self.draws[places[i][0]].take(places[i][1], kind, payload)]
                    if self.first_text_s is None and any(kind == "text" for _, kind, _ in batch):
                        self.first_text_s = time.perf_counter() - self.started
                    if out:
                        yield out
                    if any(kind == "error" for _, kind, _ in out):
                        return
                if not all(draws.draw_ended for draws in self.draws if draws.jobs):
                    return  # the client went
                out = await self._next_draws(request)
                if out:
                    yield out
        finally:
            self.close()

    async def _next_draws(self, request: Request) -> list[tuple[int, str, Any]]:
        """The ended draws' items; each prompt's next draw started, or its done event."""
        out: list[tuple[int, str, Any]] = []
        for p, draws in enumerate(self.draws):
            if draws.jobs:
                out += [(p, *event) for event in draws.end_draw()]
                if not draws.finished and await self._start_draw(draws, request):
                    continue
                out.append((p, "done", {**draws.done(), **self.timing()}))
        return out

    async def _start_draw(self, draws: ItemDraws, request: Request) -> bool:
        """Start ``draws``' next draw, waiting a while for slots another request holds; False if none came."""
        deadline = time.perf_counter() + NEXT_DRAW_WAIT_S
        while True:
            try:
                draws.start_draw()
                return True
            except ApiError as exc:
                if exc.status != 503 or time.perf_counter() > deadline or await request.is_disconnected():
                    return False
            await asyncio.sleep(_WAIT_STEP_S)

    def timing(self) -> dict[str, float]:
        return {"elapsed_s": round(time.perf_counter() - self.started, 6),
                "first_char_s": round(self.first_text_s or 0.0, 6)}
