"""A generation's events on their way to the client: Server-Sent Events, read while the client is watched.

A request waiting on its generation polls ``request.is_disconnected()`` between events, so a
client that hangs up stops its generation even while the model is slow to give text; a
streamed response stops its generations however it ends (``EventStream``).
"""

# No ``from __future__ import annotations``: see schemas.py.

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from charlstm.serve.jobs import ApiError, Job
from charlstm.serve.worker import Service

DISCONNECT_POLL_S = 0.25  # how often a request waiting on its generation checks its client is still there


def sse(kind: str | None, payload: Any) -> str:
    """One Server-Sent Event (``kind`` None: a plain data line); JSON keeps ``data`` to one line."""
    if isinstance(payload, ApiError):
        payload = payload.body()
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return (f"event: {kind}\n" if kind else "") + f"data: {data}\n\n"


async def merged_events(request: Request, jobs: list[Job]) -> AsyncIterator[list[tuple[int, str, Any]]]:
    """The events of ``jobs`` as they come, in batches of (job index, kind, payload), until each has ended.

    A batch is everything that had arrived when the loop woke, so a busy server wakes and
    writes less. ``end`` itself is not passed on. Stops early, quietly, if the client goes.
    """
    loop = asyncio.get_running_loop()
    checked = loop.time()
    live = list(range(len(jobs)))
    while live:
        batch: list[tuple[int, str, Any]] = []
        for k in list(live):
            job = jobs[k]
            while not job.queue.empty():
                kind, payload = job.queue.get_nowait()
                if kind == "end":
                    live.remove(k)
                    break
                batch.append((k, kind, payload))
            job.ready.clear()
        if batch:
            yield batch
        elif live:
            await _any_ready([jobs[k] for k in live])
        # Also while events keep coming: a whole request's client may go at any time.
        if loop.time() - checked >= DISCONNECT_POLL_S:
            checked = loop.time()
            if await request.is_disconnected():
                return


async def collect(request: Request, job: Job) -> tuple[dict[str, Any], list[str], dict[str, Any]] | None:
    """A whole generation: its start event, each sample's text and its done event; None if the client went.

    An error event is raised as the ApiError it holds.
    """
    start: dict[str, Any] = {}
    texts = [""] * job.config.num_samples
    try:
        async for batch in merged_events(request, [job]):
            for _, kind, payload in batch:
                if kind == "error":
                    raise payload
                if kind == "start":
                    start = payload
                elif kind == "text":
                    texts = [t + d for t, d in zip(texts, payload["delta"], strict=True)]
                elif kind == "done":
                    return start, texts, payload
        return None
    finally:
        request.app.state.service.forget(job)


async def _any_ready(jobs: list[Job]) -> None:
    """Until one of ``jobs`` has an event waiting, or DISCONNECT_POLL_S has passed."""
    if len(jobs) == 1:  # the common case, without a task per wait
        try:
            async with asyncio.timeout(DISCONNECT_POLL_S):
                await jobs[0].ready.wait()
        except TimeoutError:
            pass
        return
    waiters = [asyncio.ensure_future(job.ready.wait()) for job in jobs]
    try:
        await asyncio.wait(waiters, timeout=DISCONNECT_POLL_S, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def first_event(job: Job, service: Service) -> tuple[str, Any]:
    """The job's first event; an error before any text is raised, to be a plain error response."""
    try:
        first = await job.queue.get()
    except BaseException:  # cancelled while waiting: nobody will read this stream
        service.forget(job)
        raise
    if first[0] == "error":
        service.forget(job)
        raise first[1]
    return first


class EventStream(StreamingResponse):
    """A streamed response, which stops its generations however it ends: done, client gone, cancelled.

    They are stopped here rather than in the body generator: when Starlette cancels a response
    while it is sending, the generator is left suspended, and its ``finally`` would run only
    when the garbage collector gets to it.
    """

    media_type = "text/event-stream"

    def __init__(self, body: AsyncIterator[str], jobs: list[Job], service: Service):
        super().__init__(body, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.jobs, self.service = jobs, service

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            for job in self.jobs:
                self.service.forget(job)
