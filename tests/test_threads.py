"""generation/threads.py: the one thread policy, and the generators stepping by it."""

from __future__ import annotations

import torch

from _runs import stream_ids, tiny_model, window_ids
from charlstm.config.sample import SampleConfig
from charlstm.generation import threads
from charlstm.generation.threads import SMALL_STEP, intra_op_threads, server_threads, step_threads

V = 7


def test_a_small_step_takes_one_thread_and_a_big_one_the_most_allowed():
    assert step_threads(1, 512, most=8) == 1
    assert step_threads(SMALL_STEP // 512, 512, most=8) == 1  # the edge is still small
    assert step_threads(SMALL_STEP // 512 + 1, 512, most=8) == 8


def test_a_server_keeps_torch_s_count_when_batching_and_one_thread_without():
    assert server_threads(batching=True) is None
    assert server_threads(batching=False) == 1


def test_intra_op_threads_sets_only_a_change_and_restores_it(monkeypatch):
    sets: list[int] = []
    set_num_threads = torch.set_num_threads

    def recording_set(count: int) -> None:
        sets.append(count)
        set_num_threads(count)

    monkeypatch.setattr(threads.torch, "set_num_threads", recording_set)
    before = torch.get_num_threads()
    with intra_op_threads(before):
        pass
    assert sets == []
    with intra_op_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before and sets == [before + 1, before]


def threads_while_stepping(steps) -> list[int]:
    """torch's thread count seen between the steps of a generation."""
    return [torch.get_num_threads() for _ in steps]


def test_a_small_stream_generation_steps_on_one_thread_then_gives_the_count_back():
    model, prompt = tiny_model(V), torch.tensor([1, 2, 3])
    with intra_op_threads(2):
        seen = threads_while_stepping(stream_ids(model, prompt, SampleConfig(length=5), torch.Generator()))
        assert seen == [1] * 5 and torch.get_num_threads() == 2
        # 300 rows of 16 units is past SMALL_STEP: every thread allowed.
        big = SampleConfig(length=3, num_samples=300)
        assert threads_while_stepping(stream_ids(model, prompt, big, torch.Generator())) == [2] * 3
        # A window model re-reads a window per character: no single step, its count is left alone.
        window = window_ids(model, prompt, 4, SampleConfig(length=3), torch.Generator())
        assert threads_while_stepping(window) == [2] * 3
