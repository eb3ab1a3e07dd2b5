"""The baseline for bench/records.py: a makemore-style character transformer over items.

Written for the benchmark from the design of karpathy/makemore's Transformer (not copied from
it): token and learned position embeddings, pre-LayerNorm blocks of causal self-attention and a
4x MLP (tanh GELU), a final LayerNorm and an untied linear head; biases everywhere, PyTorch's
default initialisation, no dropout. makemore's defaults: 4 layers, 4 heads, 64 channels, batch
32 items drawn at random with replacement, AdamW lr 5e-4 kept constant, weight decay 0.01 on
every parameter, betas (0.9, 0.99), eps 1e-8, no gradient clipping.

Framing, as makemore's: token 0 both starts and ends an item ('.' in makemore); an item of n
characters is the input [0, c1..cn] and the target [c1..cn, 0], padded to the longest item + 1
with input 0 and target -1 (ignored). The loss per character sums the cross-entropy over the
targets that are not ignored and divides by their count, so each item's end counts once.

Deliberate differences from makemore:
- labels (not in makemore): with ``labels``, each item's start token is its label's token
  (one input-only token per label); the head still predicts only the end and the characters;
- ``score_items`` scores every given item (makemore's evaluate() averages the means of at most
  10 random batches);
- attention goes through ``F.scaled_dot_product_attention`` (the same masked softmax, faster);
- sampling keeps each block's keys and values (makemore reads the whole item again at every
  step): the same distribution, a step per character instead of a pass over the item so far.

    python bench/_makemore.py --budget 20        # self-check on ../shared/corpora/dinos.txt
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

KeysValues = tuple[torch.Tensor, torch.Tensor]  # a block's keys and values, each (B, nh, T, hs)
END = ""  # token 0: ends every item (and starts it, without labels); "" never clashes with a char


@dataclass(frozen=True)
class Recipe:
    """makemore's published defaults for its transformer; the benchmark changes none of them."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 64
    batch_size: int = 32
    lr: float = 5e-4  # constant: makemore has no schedule
    weight_decay: float = 0.01  # on every parameter, as makemore gives AdamW model.parameters()
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-8


def item_vocab(items: Sequence[str]) -> list[str]:
    """[END, *sorted characters of the items]: a token's id is its index, END's is 0."""
    return [END, *sorted(set("".join(items)))]


class Block(nn.Module):
    def __init__(self, r: Recipe):
        super().__init__()
        self.n_head = r.n_head
        self.ln_1 = nn.LayerNorm(r.n_embd)
        self.qkv = nn.Linear(r.n_embd, 3 * r.n_embd)
        self.attn_proj = nn.Linear(r.n_embd, r.n_embd)
        self.ln_2 = nn.LayerNorm(r.n_embd)
        self.mlp = nn.Sequential(nn.Linear(r.n_embd, 4 * r.n_embd), nn.GELU(approximate="tanh"),
                                 nn.Linear(4 * r.n_embd, r.n_embd))

    def forward(self, x: torch.Tensor, past: KeysValues | None = None) -> tuple[torch.Tensor, KeysValues]:
        """x (B, T, C) -> (B, T, C) and the keys and values of every position read so far.

        ``past``: those of the positions before x (sampling, one position at a time); the new
        positions then see all of them, so no mask is needed when T is 1.
        """
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(C, dim=2)
        q, k, v = (z.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for z in (q, k, v))
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # (B, nh, t + T, hs)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=past is None)  # (B, nh, T, hs)
        x = x + self.attn_proj(att.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp(self.ln_2(x)), (k, v)


class ItemTransformer(nn.Module):
    """ids (B, T) -> logits (B, T, V), T <= block_size; the model owns its framing.

    Input ids 0..V-1 are END and the characters of ``vocab``; id V + j is label j, used only in
    place of the start token. The head predicts END and the characters only (V outputs), so a
    labelled model scores and samples over exactly the same outcomes as an unlabelled one.
    """

    def __init__(self, vocab: Sequence[str], block_size: int, recipe: Recipe,
                 labels: Sequence[str] = (), label_counts: Sequence[int] = ()):
        super().__init__()
        self.vocab, self.block_size, self.recipe = list(vocab), block_size, recipe
        self.labels, self.label_counts = list(labels), list(label_counts)  # counts: for sampling
        self.steps_trained = 0
        self.wte = nn.Embedding(len(self.vocab) + len(self.labels), recipe.n_embd)
        self.wpe = nn.Embedding(block_size, recipe.n_embd)
        self.blocks = nn.ModuleList(Block(recipe) for _ in range(recipe.n_layer))
        self.ln_f = nn.LayerNorm(recipe.n_embd)
        self.head = nn.Linear(recipe.n_embd, len(self.vocab), bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1], device=ids.device))  # (B, T, C)
        for block in self.blocks:
            x, _ = block(x)
        return self.head(self.ln_f(x))  # (B, T, V)

    def extend(self, last: torch.Tensor, past: list[KeysValues] | None,
               position: int) -> tuple[torch.Tensor, list[KeysValues]]:
        """One sampling step: logits (B, V) after ``last`` (B,), the ids at ``position``, given the
        blocks' keys and values of the positions before; what ``forward`` gives at that position."""
        x = (self.wte(last) + self.wpe.weight[position]).unsqueeze(1)  # (B, 1, C)
        cache = []
        for block, before in zip(self.blocks, past or [None] * len(self.blocks), strict=True):
            x, kv = block(x, before)
            cache.append(kv)
        return self.head(self.ln_f(x))[:, 0], cache

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def start_ids(self, labels: Sequence[str] | None, n: int) -> list[int]:
        """Each item's first input: END without labels, else its label's token."""
        if not self.labels:
            if labels is not None:
                raise ValueError("this model was trained without labels")
            return [0] * n
        if labels is None or len(labels) != n:
            raise ValueError(f"this model was trained with labels: give one per item ({n})")
        if unknown := sorted(set(labels) - set(self.labels)):
            raise ValueError(f"unknown labels {unknown}; the model knows {self.labels}")
        first = {name: len(self.vocab) + j for j, name in enumerate(self.labels)}
        return [first[name] for name in labels]


def encode_items(model: ItemTransformer, items: Sequence[str],
                 labels: Sequence[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """items -> inputs, targets, each (N, block_size) int64.

    inputs [start, c1..cn, 0, ..., 0] and targets [c1..cn, 0, -1, ..., -1]: the end is the
    target after the last character, -1 is ignored by the loss.
    """
    index = {ch: i for i, ch in enumerate(model.vocab) if ch}
    pad = model.block_size
    rows_x, rows_y = [], []
    for row, (item, start) in enumerate(zip(items, model.start_ids(labels, len(items)), strict=True)):
        if len(item) >= pad:
            raise ValueError(f"item {row} has {len(item)} characters; this model frames at most {pad - 1}")
        if unknown := sorted(set(item) - index.keys()):
            raise ValueError(f"item {row} ({item!r}) has characters {unknown} not in the vocabulary")
        ids = [index[ch] for ch in item]
        rest = pad - len(ids) - 1
        rows_x.append([start, *ids] + [0] * rest)
        rows_y.append([*ids, 0] + [-1] * rest)
    return torch.tensor(rows_x, dtype=torch.long), torch.tensor(rows_y, dtype=torch.long)


def train_makemore(train_items: Sequence[str], *, budget_s: float, seed: int,
                   clock: Callable[[], float] = time.perf_counter,
                   on_step: Callable[[int, float, ItemTransformer], None] | None = None,
                   device: str | torch.device = "cpu",
                   labels: Sequence[str] | None = None, all_items: Sequence[str] | None = None,
                   recipe: Recipe = Recipe()) -> ItemTransformer:
    """Train on random batches of ``train_items`` until ``budget_s`` of ``clock`` has passed.

    The vocabulary and the longest item come from ``all_items`` when given (makemore takes them
    from the whole list, held-out items included, so every held-out item can be scored), else
    from ``train_items``. ``labels``: one per training item. ``on_step(step, elapsed, model)``
    runs after every step on the same clock (pause it while scoring). The model comes back in
    eval mode (no dropout: the modes agree) with ``steps_trained`` set. The initialisation is
    seeded without touching torch's global RNG.
    """
    frame = train_items if all_items is None else all_items
    counts = Counter(labels or ())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ItemTransformer(item_vocab(frame), max(map(len, frame)) + 1, recipe,
                                sorted(counts), [counts[k] for k in sorted(counts)])
    model.to(device)
    x, y = (t.to(device) for t in encode_items(model, train_items, labels))  # (N, block_size)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay,
                            betas=recipe.betas, eps=recipe.eps)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    start, step = clock(), 0
    while clock() - start < budget_s:
        ix = torch.randint(len(x), (recipe.batch_size,), generator=gen).to(device)  # with replacement
        logits = model(x[ix])
        loss = F.cross_entropy(logits.flatten(0, 1), y[ix].flatten(), ignore_index=-1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        model.steps_trained = step
        if on_step is not None:
            on_step(step, clock() - start, model)
    return model.eval()


@torch.no_grad()
def score_items(model: ItemTransformer, items: Sequence[str], labels: Sequence[str] | None = None,
                *, batch_size: int = 256) -> tuple[float, int]:
    """(mean nats per character, characters counted) over every item, each end counted once."""
    x, y = encode_items(model, items, labels)
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        losses = F.cross_entropy(model(xb).flatten(0, 1), yb.flatten(), ignore_index=-1, reduction="sum")
        total += losses.item()
        count += int((yb != -1).sum())
    return total / count, count


@torch.no_grad()
def sample_items(model: ItemTransformer, n: int, *, temperature: float = 1.0, seed: int,
                 max_len: int | None = None, label: str | Sequence[str] | None = None) -> list[str]:
    """n items, each drawn from its start until END or cut at ``max_len`` characters.

    ``max_len`` defaults to (and cannot exceed) the longest item the model frames; an item cut
    there comes back as it is. A labelled model takes ``label`` (one for all, or one per item);
    without it, labels are drawn as often as they occurred in training.
    """
    if temperature <= 0:
        raise ValueError("temperature must be above 0")
    limit = model.block_size - 1 if max_len is None else min(max_len, model.block_size - 1)
    gen = torch.Generator().manual_seed(seed)  # on the CPU: the same draws on any device
    if model.labels and label is None:
        weights = torch.tensor(model.label_counts, dtype=torch.float)
        label = [model.labels[i] for i in torch.multinomial(weights, n, replacement=True, generator=gen)]
    labels = [label] * n if isinstance(label, str) else label
    device = next(model.parameters()).device
    rows: list[list[int]] = [[] for _ in range(n)]
    active = torch.arange(n)  # the rows still drawing
    last = torch.tensor(model.start_ids(labels, n), device=device)  # (a,) each one's latest id
    past = None
    # limit + 1 draws, so an item of exactly ``limit`` characters can still draw its END.
    for position in range(limit + 1):
        logits, past = model.extend(last, past, position)  # (a, V)
        probs = F.softmax(logits.float() / temperature, dim=-1)
        nxt = torch.multinomial(probs.cpu(), 1, generator=gen).squeeze(1)  # (a,)
        going = nxt != 0
        for row, token in zip(active[going].tolist(), nxt[going].tolist(), strict=True):
            rows[row].append(token)
        if not going.any():
            break
        active, last = active[going], nxt[going].to(device)
        keep = going.to(device)  # an ended row is read no more
        past = [(k[keep], v[keep]) for k, v in past]
    return ["".join(model.vocab[i] for i in row[:limit]) for row in rows]


def read_items(path: str) -> list[str]:
    """One item per non-empty line, surrounding whitespace trimmed."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def main() -> None:
    import _report  # only for the corpora's folder; the library part needs nothing from bench/

    parser = argparse.ArgumentParser(description="Self-check: makemore's transformer on a list of items.")
    parser.add_argument("--budget", type=float, default=20.0, help="training seconds")
    parser.add_argument("--seed", type=int, default=3407, help="split, initialisation, batches, samples")
    parser.add_argument("--items", default=str(_report.ROOT.parent / "shared" / "corpora" / "dinos.txt"))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    items = read_items(args.items)
    order = random.Random(args.seed).sample(range(len(items)), len(items))  # not the file's sorted tail
    held = max(1, len(items) // 10)
    train = [items[i] for i in order[held:]]
    val = [items[i] for i in order[:held]]
    model = train_makemore(train, budget_s=args.budget, seed=args.seed, device=args.device, all_items=items)
    print(f"{len(train)} training items, {len(val)} held out; vocab {len(model.vocab)} "
          f"(end included), block {model.block_size}, {model.num_parameters():,} parameters")
    print(f"{model.steps_trained} steps in {args.budget:g} s")
    for name, split in (("held-out", val), ("train", train)):
        loss, count = score_items(model, split)
        print(f"{name} loss {loss:.4f} nats/char ({loss / 0.6931471805599453:.3f} bits), {count} chars")
    samples = sample_items(model, 20, seed=args.seed)
    seen, held_out = set(train), set(val)
    for s in samples:
        print(f"  {s:<28} {'in training' if s in seen else 'held-out' if s in held_out else 'new'}")
    print(f"{sum(s not in seen for s in samples)} of {len(samples)} samples are not in the training list")


if __name__ == "__main__":
    main()
