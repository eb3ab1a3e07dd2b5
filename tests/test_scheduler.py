"""The batched scheduler: every live stream stepped together, each one's text its own.

Driven directly, on an event loop of the test's own: jobs in, events out, no HTTP.
"""

from __future__ import annotations

import asyncio

import pytest

from _reference import cut_at_stop
from _runs import train_stream_run, write_text
from charlstm.config.sample import SampleConfig
from charlstm.generation.generators import generate_text
from charlstm.generation.prompts import prompt_ids
from charlstm.generation.threads import step_threads
from charlstm.runs.loading import LoadedModel, load_model
from charlstm.serve import scheduler as scheduler_module
from charlstm.serve.jobs import ApiError, Job, Slots
from charlstm.serve.scheduler import Scheduler

ROWS = 8


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> LoadedModel:
    root = tmp_path_factory.mktemp("scheduler")
    return load_model(train_stream_run(root / "run", write_text(root / "text.txt")))


@pytest.fixture
def pool(loaded):
    slots = Slots(ROWS)
    scheduler = Scheduler(loaded, ROWS, slots.give)
    yield scheduler, slots
    scheduler.close()


async def run_job(scheduler: Scheduler, slots: Slots, loaded: LoadedModel, prompt: str, *,
                  stops: tuple[str, ...] = (), delay: float = 0.0, cancel_after: int | None = None,
                  **settings) -> tuple[list[str], dict]:
    """Submit one request after ``delay`` seconds; its texts and done event."""
    await asyncio.sleep(delay)
    job = start_job(scheduler, slots, loaded, prompt, stops=stops, **settings)
    return await read_job(job, cancel_after)


def start_job(scheduler: Scheduler, slots: Slots, loaded: LoadedModel, prompt: str, *,
              stops: tuple[str, ...] = (), **settings) -> Job:
    """On a running event loop: take the slots and submit the request (seed 1, length 60 unless given)."""
    config = SampleConfig(**{"seed": 1, "length": 60, **settings})
    text, ids = prompt_ids(loaded, prompt, config, config.seed)
    job = Job(asyncio.get_running_loop(), "m", text, ids, config, stops)
    assert slots.take(config.num_samples)
    scheduler.submit(job)
    return job


async def read_job(job: Job, cancel_after: int | None = None) -> tuple[list[str], dict]:
    """A submitted job's texts and done event; ``cancel_after`` characters: stop it then."""
    texts, done = [""] * job.config.num_samples, {}
    while (event := await job.queue.get())[0] != "end":
        kind, payload = event
        if kind == "text":
            texts = [t + d for t, d in zip(texts, payload["delta"], strict=True)]
            if cancel_after is not None and len(texts[0]) >= cancel_after:
                job.stop.set()
        elif kind == "done":
            done = payload
        assert kind != "error", payload
    return texts, done


def test_a_sample_is_the_library_s_text_alone_and_amid_streams_joining_and_leaving(pool, loaded):
    scheduler, slots = pool
    settings = {"temperature": 0.8, "seed": 7, "length": 150}
    library = generate_text(loaded, "the ", **settings)

    async def main():
        alone = await run_job(scheduler, slots, loaded, "the ", **settings)
        crowd = [run_job(scheduler, slots, loaded, "and ", seed=k, length=20 + 13 * k, delay=0.002 * k)
                 for k in range(6)]
        amid = run_job(scheduler, slots, loaded, "the ", delay=0.004, **settings)
        amid, *others = await asyncio.gather(amid, *crowd)
        return alone, amid, others

    alone, amid, others = asyncio.run(main())
    assert alone[0] == amid[0] == library
    for k, (texts, done) in enumerate(others):  # each of the others is its own library text too
        assert texts == generate_text(loaded, "and ", seed=k, length=20 + 13 * k)
        assert done["finish_reasons"] == ["length"]
    assert slots.used == 0 and not scheduler.live


def test_prompts_that_arrive_together_are_read_in_one_batch_and_each_gives_its_own_text(pool, loaded,
                                                                                         monkeypatch):
    scheduler, slots = pool
    batches: list[list[int]] = []
    real = scheduler_module.prime_many

    def counting(model, prompts, **kwargs):
        batches.append([len(p) for p in prompts])
        return real(model, prompts, **kwargs)

    monkeypatch.setattr(scheduler_module, "prime_many", counting)
    requests = [("the ", {"seed": 3}), ("and so she went on ", {"seed": 4, "num_samples": 2}),
                ("a", {"seed": 5, "top_k": 4}), ("the ", {"seed": 6, "length": 25})]

    async def main():
        with scheduler._cond:  # held: the scheduler takes all four at its next look
            jobs = [start_job(scheduler, slots, loaded, prompt, **settings) for prompt, settings in requests]
        return await asyncio.gather(*[read_job(job) for job in jobs])

    results = asyncio.run(main())
    assert batches == [[4, 19, 1, 4]]  # one pass for the four prompts, of three lengths
    # Read in a batch, a prompt's state matches its reading alone to float rounding (prime_many's
    # tests bound it); at this size no draw lands that close to a boundary, so the texts are equal.
    for (prompt, settings), (texts, _) in zip(requests, results, strict=True):
        assert texts == generate_text(loaded, prompt, **{"seed": 1, "length": 60, **settings})
    assert slots.used == 0 and not scheduler.live


def test_rows_with_different_settings_in_one_batch_each_follow_their_own(pool, loaded):
    scheduler, slots = pool
    requests = [{"greedy": True}, {"top_k": 3, "seed": 4}, {"top_p": 0.8, "seed": 5},
                {"temperature": 1.5, "seed": 6}, {"num_samples": 3, "seed": 8},
                {"min_p": 0.2, "top_k": 8, "temperature": 1.3, "seed": 9}]

    async def main():
        return await asyncio.gather(*[run_job(scheduler, slots, loaded, "she ", **r) for r in requests])

    for settings, (texts, done) in zip(requests, asyncio.run(main()), strict=True):
        assert texts == generate_text(loaded, "she ", **{"seed": 1, "length": 60, **settings})
        assert done["characters"] == 60 * settings.get("num_samples", 1)


def test_rows_with_the_repetition_control_follow_the_library_beside_rows_without(pool, loaded):
    scheduler, slots = pool
    requests = [{"dry_multiplier": 1.0, "dry_allowed_length": 4, "temperature": 0.5, "seed": 10},
                {"greedy": True, "dry_multiplier": 0.8, "dry_allowed_length": 6, "length": 150},
                {"greedy": True, "length": 150}, {"seed": 11, "num_samples": 2, "dry_multiplier": 2.0}]

    async def main():
        return await asyncio.gather(*[run_job(scheduler, slots, loaded, "the ", **r) for r in requests])

    results = asyncio.run(main())
    for settings, (texts, _) in zip(requests, results, strict=True):
        assert texts == generate_text(loaded, "the ", **{"seed": 1, "length": 60, **settings})
    assert results[1][0] != results[2][0]  # greedy text loops here, and the control breaks the loop
    assert scheduler.filtered_rows == 0 and slots.used == 0


def test_a_stop_sequence_ends_a_sample_with_its_reason_and_frees_its_row(pool, loaded):
    scheduler, slots = pool
    full = generate_text(loaded, "the ", seed=2, length=200)[0]
    stop = full[40:42]  # certain to come, at or before character 40
    expected, stopped = cut_at_stop(full, [stop])
    assert stopped
    texts, done = asyncio.run(run_job(scheduler, slots, loaded, "the ", stops=(stop,), seed=2, length=200))
    assert texts == [expected] and done["finish_reasons"] == ["stop"]
    assert done["characters"] == len(expected)
    assert slots.used == 0 and not scheduler.live


def test_a_cancelled_stream_leaves_at_once_and_the_others_go_on(pool, loaded):
    scheduler, slots = pool

    async def main():
        return await asyncio.gather(run_job(scheduler, slots, loaded, "the ", length=2000, cancel_after=1),
                                    run_job(scheduler, slots, loaded, "and ", seed=3, length=300))

    (cut, cut_done), (whole, whole_done) = asyncio.run(main())
    assert whole_done["finish_reasons"] == ["length"]
    assert cut_done["finish_reasons"] == ["cancelled"] and cut_done["stopped"] is True
    assert len(cut[0]) < 2000
    assert whole == generate_text(loaded, "and ", seed=3, length=300)
    assert slots.used == 0


def test_prompts_are_read_on_every_thread_and_steps_take_the_thread_policy_s_count(pool, loaded,
                                                                                monkeypatch):
    scheduler, slots = pool
    asked: list[int] = []
    monkeypatch.setattr(scheduler_module, "use_threads", asked.append)
    scheduler.max_threads = 3  # as if torch had 3 threads when the scheduler was made
    texts, _ = asyncio.run(run_job(scheduler, slots, loaded, "the ", length=5))
    small = step_threads(1, loaded.model.config.hidden_size, most=3)
    assert small == 1 and asked == [3, small, small, small, small]  # the 5th character ends the row
    assert texts == generate_text(loaded, "the ", seed=1, length=5)


def test_length_zero_finishes_at_once(pool, loaded):
    scheduler, slots = pool
    texts, done = asyncio.run(run_job(scheduler, slots, loaded, "the ", length=0, num_samples=2))
    assert texts == ["", ""] and done["finish_reasons"] == ["length", "length"] and slots.used == 0


def test_a_failing_step_fails_its_streams_and_the_scheduler_serves_the_next(pool, loaded, monkeypatch):
    scheduler, slots = pool
    real = Scheduler._advance

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(Scheduler, "_advance", broken)

    async def failing():
        config = SampleConfig(seed=1, length=50)
        text, ids = prompt_ids(loaded, "the ", config, 1)
        job = Job(asyncio.get_running_loop(), "m", text, ids, config)
        assert slots.take(1)
        scheduler.submit(job)
        kinds = []
        while (event := await job.queue.get())[0] != "end":
            kinds.append(event[0])
        return kinds

    assert "error" in asyncio.run(failing())
    assert slots.used == 0
    monkeypatch.setattr(Scheduler, "_advance", real)
    texts, _ = asyncio.run(run_job(scheduler, slots, loaded, "the "))
    assert texts == generate_text(loaded, "the ", seed=1, length=60)


def test_a_closed_scheduler_refuses_new_work(loaded):
    slots = Slots(2)
    scheduler = Scheduler(loaded, 2, slots.give)
    scheduler.close()
    assert not scheduler.thread.is_alive()
    with pytest.raises(ApiError, match="shutting down"):
        scheduler.submit(None)  # type: ignore[arg-type]
