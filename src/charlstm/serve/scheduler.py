"""One served model's live generations, stepped together (continuous batching).

The scheduler owns a pool of state rows on the model's device, one per slot. Every live
sample holds one row, and the live rows are kept at the front of the pool, so a step advances
rows [0, n) in one batched single step (``LSTMStepper.first_rows``) and nothing is gathered or
concatenated per step. A sample that ends hands its row to the pool's last live sample (one row
of state copied), so the front stays dense.

Its thread loops, between steps:
1. admits waiting requests: the prompts that arrived since the last step are read together in
   one batched forward pass of their own (``prime_many``, never inside the decode batch: 16
   prompts cost about a third of reading them one by one), and each one's final state is
   written into free rows, one per sample;
2. samples every live row from its logits with that row's own settings and random stream;
3. hands the characters out, ending rows whose length or stop sequence is reached or whose
   client has gone: their rows are free for the next admission at once;
4. steps the rows still live.

A request's text depends only on its prompt, settings and seed, not on what else runs: each
sample draws from its own generator (``sample_generators``) in noise blocks counted from its
own first step, exactly as ``charlstm generate`` draws its samples. What else runs changes only
the batch's shape, and with it the float rounding of the matmuls (about 1e-8 in a logit of the
2 x 512 model): a draw flips only if its noise falls that close to the boundary between two
characters. Tests check the texts match alone and amid other streams joining and leaving, and
that prompts read together end within 1e-5 of each read alone.
"""

# No ``from __future__ import annotations``: see schemas.py.

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from charlstm.config.sample import SampleConfig
from charlstm.generation.generators import NOISE_BLOCK
from charlstm.generation.sampling import RepeatPenalty, Sampler, race, sample_generators
from charlstm.generation.stops import SampleStops
from charlstm.generation.threads import step_threads, use_threads
from charlstm.model.network import prime_many
from charlstm.model.stepper import LSTMStepper, supports_fast_steps
from charlstm.runs.loading import LoadedModel
from charlstm.serve.jobs import ApiError, Job, Outbox, TextOut

log = logging.getLogger(__name__)

@dataclass(eq=False)
class _Request:
    """One admitted request: its text on the way out, and its samples' stop sequences and ends."""

    out: TextOut
    ends: SampleStops
    rows_left: int


@dataclass(eq=False)
class _Row:
    """One live sample: its request, its settings and random stream, how far it has come."""

    request: _Request
    sample: int
    config: SampleConfig
    generator: torch.Generator
    sampler: Sampler  # its own step: a filtered row's logits go through sampler.scores
    history: list[int] | None = None  # its text so far (ids), kept only for the repetition control
    steps: int = 0  # characters generated; a noise block begins at every NOISE_BLOCK of them


class Scheduler:
    """A thread that steps every live generation of one stream model together."""

    def __init__(self, loaded: LoadedModel, rows: int, on_rows_end: Callable[[int], None], *,
                 observe_step: Callable[[float], None] | None = None):
        """``rows`` slots; ``on_rows_end(k)`` is called as k rows are freed (to give the slots back).

        ``observe_step(seconds)``, if given, is told how long each step of live rows took (metrics.py).
        """
        model = loaded.model
        self.loaded, self.model, self.rows, self.on_rows_end = loaded, model, rows, on_rows_end
        self.observe_step = observe_step
        self.device = model.head.weight.device
        self.vocab_chars = loaded.vocab.chars
        V = len(self.vocab_chars)
        with torch.inference_mode():
            self.state = model.init_state(rows)  # each (L, rows, H)
        self.stepper = LSTMStepper(model, self.state) if supports_fast_steps(model) else None
        # (rows, V): each row's next-step logits; the stepper's own buffer, so a step writes them in place.
        self.logits = self.stepper.logits if self.stepper else torch.zeros(rows, V, device=self.device)
        # Each row's noise block, as a ring: every row reads column ``tick`` at a step, so a step
        # takes one view for all rows rather than gathering each row's place in its own block.
        self.noise = torch.zeros(rows, NOISE_BLOCK, V, device=self.device)
        self.tick = 0
        self.filtered_rows = 0  # live rows whose sampler filters: none, and a step skips them all
        self._views: dict[int, LSTMStepper] = {}
        self.max_threads = torch.get_num_threads()  # for prompts and big steps (step_threads)
        self.hidden_size = model.config.hidden_size
        self.live: list[_Row] = []  # row i of the pool is live[i]
        self._requests: set[_Request] = set()
        self._waiting: list[Job] = []
        self.outbox = Outbox()  # every job's events, sent once a loop
        self._cond = threading.Condition()
        self._closed = False
        self.thread = threading.Thread(target=self._loop, name="charlstm-scheduler", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> None:
        """Queue ``job`` to join at the next step; its slots are already taken."""
        with self._cond:
            if self._closed:
                raise ApiError(503, "the server is shutting down")
            self._waiting.append(job)
            self._cond.notify()

    def close(self) -> None:
        """End every generation (each gets its done event) and stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self.thread.join(timeout=10)

    def _loop(self) -> None:
        with torch.inference_mode():  # once: entering it per step costs as much as a small op
            self._serve()

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self.live and not self._closed:
                    self._cond.wait()
                joining, self._waiting = self._waiting, []
                closed = self._closed
            if closed:
                for job in joining:
                    job.stop.set()
                for row in self.live:
                    row.request.out.job.stop.set()
            if joining:
                self._admit(joining)
            stepping, began = bool(self.live), time.perf_counter()
            try:
                self._step()
            except Exception:  # one bad step must not take every stream of the model with it
                log.exception("a batched step of %d rows failed", len(self.live))
                error = ApiError(500, "internal error: the generation failed (see the server log)")
                for row in self.live:
                    row.request.out.job.stop.set()
                    row.request.out.job.emit("error", error)
                self._end_rows([(i, "cancelled") for i in range(len(self.live))])
            if stepping and self.observe_step is not None:  # before the events go: a client sees it counted
                self.observe_step(time.perf_counter() - began)
            self.outbox.send()
            if closed and not self.live:
                return

    def _admit(self, jobs: list[Job]) -> None:
        """Read the prompts of ``jobs`` in one batch of their own; one row per sample takes its state."""
        for job in jobs:
            job.outbox = self.outbox
        try:
            use_threads(self.max_threads)  # a prompt is one long forward pass, which gains from every core
            logits, state = prime_many(self.model, [torch.from_numpy(job.ids) for job in jobs])  # (N, V)
        except Exception:
            log.exception("reading %d prompts failed", len(jobs))
            for job in jobs:
                job.emit("error", ApiError(500, "internal error: the generation failed (see the server log)"))
                job.emit("end", None)
                self.on_rows_end(job.config.num_samples)
            return
        for k, job in enumerate(jobs):
            self._join(job, logits[k], tuple(s[:, k] for s in state))

    def _join(self, job: Job, logits: torch.Tensor, state: tuple[torch.Tensor, ...]) -> None:
        """``job``'s samples take rows, each from the prompt's logits (V,) and state (each (L, H))."""
        config = job.config
        request = _Request(TextOut(job), job.sample_stops(), config.num_samples)
        self._requests.add(request)
        job.emit_start()
        generators = sample_generators(config.seed, config.num_samples, self.device)
        sampler = Sampler(config)  # settings only: its samples share it
        for sample, generator in enumerate(generators):
            i = len(self.live)
            for pool, own in zip(self.state, state, strict=True):
                pool[:, i] = own
            self.logits[i] = logits.float()
            if sampler.greedy:
                self.noise[i].zero_()  # argmax of the logits themselves
            self.filtered_rows += sampler.rescores
            history = job.ids[-RepeatPenalty.WINDOW :].tolist() if sampler.repeat else None
            self.live.append(_Row(request, sample, config, generator, sampler, history))
        if config.length == 0:
            first = len(self.live) - config.num_samples
            self._end_rows([(i, "length") for i in range(first, len(self.live))])

    def _step(self) -> None:
        """Sample every live row, hand the characters out, end finished rows, step the rest."""
        n = len(self.live)
        if n == 0:
            return
        for i, row in enumerate(self.live):
            if row.steps % NOISE_BLOCK == 0 and not row.sampler.greedy:  # its next noise block
                steps = min(NOISE_BLOCK, row.config.length - row.steps)
                block = row.sampler.noise(row.generator, steps, 1, self.noise.shape[-1],
                                          self.device)[:, 0]  # (steps, V)
                # Its j-th step reads column (tick + j) mod NOISE_BLOCK, as every row's does.
                head = min(steps, NOISE_BLOCK - self.tick)
                self.noise[i, self.tick : self.tick + head] = block[:head]
                self.noise[i, : steps - head] = block[head:]
        logits = self.logits[:n]  # (n, V)
        scores = logits  # unfiltered rows race their logits: the temperature is in their noise
        if self.filtered_rows:
            scores = logits.clone()
            for i, row in enumerate(self.live):
                if row.sampler.rescores:  # its own settings, so one row at a time
                    history = None if row.history is None else [row.history]
                    scores[i] = row.sampler.scores(logits[i : i + 1], history)[0]
        noise = self.noise[:n, self.tick]  # (n, V): each row's noise for this step; greedy rows hold zeros
        self.tick = (self.tick + 1) % NOISE_BLOCK
        ids = race(scores, noise)  # (n,); not into the noise: greedy rows keep their zeros
        ended: list[tuple[int, str]] = []
        chars = self.vocab_chars
        for i, (row, next_id) in enumerate(zip(self.live, ids.tolist(), strict=True)):
            row.steps += 1
            if row.history is not None:
                row.history.append(next_id)
            ends = row.request.ends
            shown = ends.feed(row.sample, chars[next_id])
            if shown:
                row.request.out.add(row.sample, shown)
            if ends.stopped(row.sample):
                ended.append((i, "stop"))
            elif row.request.out.job.stop.is_set():
                ended.append((i, "cancelled"))
            elif row.steps >= row.config.length:
                ended.append((i, "length"))
        now = time.perf_counter()
        for request in self._requests:
            request.out.maybe_flush(now)
        if ended:
            self._end_rows(ended, ids)
        n = len(self.live)
        if n:
            self._advance(ids[:n], n)

    def _end_rows(self, ended: list[tuple[int, str]], ids: torch.Tensor | None = None) -> None:
        """End the rows (index, finish reason): the pool's last live rows move into their places.

        From the highest index down, so the row moved in is never one still to end.
        """
        for i, reason in sorted(ended, reverse=True):
            row = self.live[i]
            self.filtered_rows -= row.sampler.rescores
            request = row.request
            held = request.ends.end(row.sample, reason)  # held back for a stop sequence that did not come
            if held:
                request.out.add(row.sample, held)
            last = len(self.live) - 1
            if i != last:
                for pool in self.state:
                    pool[:, i] = pool[:, last]
                self.noise[i] = self.noise[last]
                if ids is not None:
                    ids[i] = ids[last]
                self.live[i] = self.live[last]
            self.live.pop()
            self.on_rows_end(1)
            request.rows_left -= 1
            if request.rows_left == 0:
                self._requests.discard(request)
                request.out.finish(request.ends.finish_reasons())
                request.out.job.emit("end", None)

    def _advance(self, ids: torch.Tensor, n: int) -> None:
        """Step rows [0, n) by ``ids`` (n,); their next logits land in ``self.logits[:n]``."""
        use_threads(step_threads(n, self.hidden_size, most=self.max_threads))
        if self.stepper is not None:
            view = self._views.get(n)
            if view is None:
                view = self._views[n] = self.stepper.first_rows(n)
            view.step(ids)  # into self.logits[:n]
            return
        state = tuple(s[:, :n] for s in self.state)
        logits, new_state = self.model(ids[:, None], state)  # (n, 1, V)
        for pool, new in zip(self.state, new_state, strict=True):
            pool[:, :n] = new
        self.logits[:n] = logits[:, -1].float()
