"""framing/items.py: whole items from their start to their end, padded batches, ends counted."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from _runs import tiny_model
from charlstm.data.items import END_ID, START_ID
from charlstm.errors import CorpusError
from charlstm.framing.items import IGNORE, ItemBatches, ItemFraming, evaluate_items, item_bounds, pad_items

V = 9


def _items(*lengths: int, seed: int = 0) -> np.ndarray:
    """Items of the given lengths (characters 2..V-1), each as START, characters, END."""
    rng = np.random.default_rng(seed)
    return np.concatenate([[START_ID, *rng.integers(2, V, n).tolist(), END_ID] for n in lengths])


def test_items_are_found_by_their_ends_and_padded_with_ignored_targets():
    ids = _items(3, 1, 5)
    starts, ends = item_bounds(ids)
    assert starts.tolist() == [0, 5, 8] and ends.tolist() == [4, 7, 14]
    x, y = pad_items(ids, starts, ends)
    assert x.shape == y.shape == (3, 6)  # the longest item: 5 characters + its end
    assert x[:, 0].tolist() == [START_ID] * 3  # every row starts from the start symbol
    assert (y != IGNORE).sum(dim=1).tolist() == [4, 2, 6]  # n characters + the end, each
    assert y[1, :2].tolist() == [int(ids[6]), END_ID] and (y[1, 2:] == IGNORE).all()


def test_a_stream_that_does_not_end_with_an_items_end_is_refused():
    with pytest.raises(CorpusError, match="not a list of items"):
        item_bounds(np.array([START_ID, 3, 4]))


def test_an_epoch_reads_every_item_once_in_a_seeded_order_that_changes_by_epoch():
    ids = _items(*range(1, 21))
    batches = ItemBatches(ids, 4, seed=3)
    assert len(batches) == 5

    def seen(epoch: int) -> list[tuple[int, ...]]:
        return [tuple(row[row != IGNORE].tolist()) for _, _, y in batches.iterate(epoch) for row in y]

    first = seen(0)
    assert len(set(first)) == 20 and first == seen(0) and first != seen(1)
    assert [k for k, _, _ in batches.iterate(0, start=3)] == [3, 4]  # resume mid-epoch


def test_processes_take_disjoint_items_and_the_same_number_of_steps():
    ids = _items(*range(1, 25))
    parts = [ItemBatches(ids, 3, seed=0, rank=r, world_size=2) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 4
    rows = [{tuple(row.tolist()) for _, x, _ in part.iterate(0) for row in x} for part in parts]
    assert not rows[0] & rows[1]


def test_too_few_items_for_a_batch_is_a_clear_error():
    with pytest.raises(CorpusError, match="too few for batches"):
        ItemBatches(_items(2, 3), 4, seed=0)


def test_evaluation_counts_every_items_characters_and_end_from_a_fresh_state():
    torch.manual_seed(0)
    model = tiny_model(V, num_layers=1)
    ids = _items(4, 2, 7, 1, 3)
    result = evaluate_items(model, ids, device=torch.device("cpu"))
    assert result.characters == 4 + 2 + 7 + 1 + 3 + 5
    # The naive reference: item by item, from a zero state, summing -log p of each target.
    total = 0.0
    starts, ends = item_bounds(ids)
    with torch.no_grad():
        for s, e in zip(starts, ends, strict=True):
            item = torch.as_tensor(ids[s : e + 1], dtype=torch.long)
            logits, _ = model(item[None, :-1])
            total -= logits[0].log_softmax(-1).gather(-1, item[1:, None]).sum().item()
    assert result.loss == pytest.approx(total / result.characters, rel=1e-5)
    capped = evaluate_items(model, ids, device=torch.device("cpu"), max_chars=6)
    assert capped.characters == 5 + 3  # whole items until the cap is reached


def test_a_uniform_model_scores_log_v_per_character():
    model = tiny_model(V, num_layers=1)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    result = ItemFraming(8).evaluate(model, _items(3, 5), device=torch.device("cpu"))
    assert result.loss == pytest.approx(math.log(V), rel=1e-6)


def test_the_loss_ignores_padding():
    torch.manual_seed(1)
    model = tiny_model(V, num_layers=1)
    ids = _items(1, 6)
    starts, ends = item_bounds(ids)
    x, y = pad_items(ids, starts, ends)
    loss, state = ItemFraming(8).loss(model, x, y, None)
    assert state is None
    reference = evaluate_items(model, ids, device=torch.device("cpu"))
    assert float(loss.detach()) == pytest.approx(reference.loss, rel=1e-5)
