"""The report's samples for a model of a list of things: whole items, sorted as makemore prints them.

At each temperature the report draws the same number of items from one seed (a labelled model's
labels taken in turn, the same number each) and sorts them into the three groups of
``novelty.item_novelty``: in the training list, held out (real, never seen in training), new.
The long-text measures of ``novelty.NoveltyIndex`` are not shown: an item is far shorter than
the passages they look for, and whether it is copied is simply whether it is in the list.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from charlstm.analysis.novelty import ITEM_GROUPS, ListItems, item_novelty, list_items
from charlstm.config.sample import SampleConfig
from charlstm.generation.items import Item, generate_items
from charlstm.generation.sampling import SAMPLE_TEMPERATURES
from charlstm.runs.loading import LoadedModel

ITEMS_PER_TEMPERATURE = 50  # makemore prints 10 a step; 50 gives shares in steps of 2%
GROUP_NAMES = {
    "train": "in the training list",
    "held_out": "held-out items (real, never seen in training)",
    "new": "new",
}
_HEADS = {"train": "in training", "held_out": "held out", "new": "new"}  # table column heads


@dataclass(frozen=True)
class ItemSample:
    temperature: float
    items: list[Item]
    figures: dict[str, Any]  # item_novelty's


def draw_item_samples(
    loaded: LoadedModel, known: ListItems, *, count: int, seed: int, prompt: str | None = None
) -> list[ItemSample]:
    """``count`` items per temperature (rounded up to a multiple of the labels), all from one seed."""
    labels = list(known.labels)
    if labels:
        count = -(-count // len(labels)) * len(labels)  # ceil: every label as many items
    samples = []
    for temperature in SAMPLE_TEMPERATURES:
        draw = generate_items(loaded, count, SampleConfig(temperature=temperature, seed=seed),
                              prompt=prompt or "", labels=labels, known=known.train)
        samples.append(ItemSample(temperature, draw.items, item_novelty(known, draw)))
    return samples


def items_section(loaded: LoadedModel, *, count: int, seed: int, prompt: str | None = None) -> str:
    """The report's samples section for a model of a list: draws at every temperature, sorted."""
    known = list_items(loaded)
    return items_html(draw_item_samples(loaded, known, count=count, seed=seed, prompt=prompt), known, seed)


def percent(value: float | None) -> str:
    """A share as the report prints it; None (nothing to share out) as n/a."""
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _row(cells: list[str]) -> str:
    return "<tr>" + "".join(f"<td class='num'>{cell}</td>" for cell in cells) + "</tr>"


def _figure_cells(figures: dict[str, Any], labelled: bool) -> list[str]:
    cells = [str(figures["items"]), *(percent(figures["shares"][g]) for g in ITEM_GROUPS)]
    cells.append(str(figures["cut"]))
    if labelled:
        cells.append(f"{percent(figures['label_match_share'])} of {figures['decided']}")
    return cells


def _table(first: list[str], rows: list[str], labelled: bool) -> str:
    heads = [*first, "items", *(_HEADS[g] for g in ITEM_GROUPS), "cut", *(["label kept"] if labelled else [])]
    head = "".join(f"<th class='num'>{html.escape(h)}</th>" for h in heads)
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _groups_html(items: list[Item], figures: dict[str, Any], known: ListItems) -> str:
    """The items in makemore's three groups, each with its count and share."""
    e = html.escape
    parts = []
    for group in ITEM_GROUPS:
        mine = [item for item in items if known.group(item.text) == group]
        entries = "".join(f"<li>{e(item.text)}{'' if item.complete else ' <em>(cut)</em>'}</li>"
                          for item in mine)
        parts.append(f"<p class='group'>{figures['counts'][group]} {e(GROUP_NAMES[group])} "
                     f"({percent(figures['shares'][group])})</p>"
                     + (f"<ul class='items'>{entries}</ul>" if mine else ""))
    return "\n".join(parts)


def items_html(samples: list[ItemSample], known: ListItems, seed: int) -> str:
    """The report's samples section for a model of a list."""
    e = html.escape
    labels = known.labels
    count = samples[0].figures["items"] if samples else 0
    note = (f"{count} items at each temperature, all with seed {seed}, so they differ only by "
            "temperature, sorted as makemore prints them: items of the training list, held-out "
            "items (items of the list in its validation or test split, never seen in training) "
            "and new ones; shares of the items drawn. Cut: items that reached the length limit "
            "before their end.")
    if labels:
        note += (f" Labels are taken in turn, {count // len(labels)} items each. Label kept: of the "
                 "items drawn that the list gives exactly one label, the share drawn for that label.")
    parts = ["<h2>Samples</h2>", f"<p class='note'>{e(note)}</p>",
             _table(["temperature"], [_row([f"{s.temperature:.1f}", *_figure_cells(s.figures, bool(labels))])
                                      for s in samples], bool(labels))]
    if labels:
        rows = [_row([f"{s.temperature:.1f}", e(label), *_figure_cells(s.figures["labels"][label], True)])
                for s in samples for label in labels]
        parts += ["<h3>by label</h3>", _table(["temperature", "label"], rows, True)]
    for s in samples:
        parts.append(f"<h3>temperature {s.temperature:.1f}</h3>")
        if not labels:
            parts.append(_groups_html(s.items, s.figures, known))
        for label in labels:
            mine = [item for item in s.items if item.label == label]
            parts += [f"<h4>label {e(label)}</h4>", _groups_html(mine, s.figures["labels"][label], known)]
    return "\n".join(parts)
