"""Stream framing (char-rnn / torch-rnn style): loss on every position, state carried.

**Stream framing** (``stream``, char-rnn / torch-rnn style): the train ids are
cut into B equal rows, and batch k takes columns [k*T, (k+1)*T) of every row::

    ids:   a b c d e f g h i j k l m n o p q r s t u v w x     (B=2, T=3)
    row 0: a b c | d e f | g h i | j k l
    row 1: m n o | p q r | s t u | v w x
           batch0  batch1  batch2  batch3

so row n of batch k+1 continues row n of batch k, and the model's state can
carry from one batch to the next. Targets are the same grid shifted by one.

Evaluation reads held-out text the same way, state carried; generation reads the prompt
once and then costs one single step per character (O(1), ``LSTMStepper`` for LSTMs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from charlstm.config.choices import FramingName
from charlstm.data.prepared import to_tensor
from charlstm.data.vocab import Vocab
from charlstm.errors import ConfigError, CorpusError
from charlstm.framing.base import Batch, Framing, progress_bar
from charlstm.model.loss import EvalResult, char_loss
from charlstm.model.network import CharLSTM, State, detach_state, evaluating, prime
from charlstm.model.stepper import LSTMStepper, supports_fast_steps

EVAL_ROWS = 16  # parallel rows for stream scoring; each starts from a zero state
EVAL_CHUNK = 256  # characters per forward call; state carries between chunks
SAMPLE_PROMPT = 40  # characters the training log's samples start from


class StreamFraming(Framing):
    """Contiguous rows, every position a target, the LSTM state carried across batches."""

    name = FramingName.STREAM
    carries_state = True

    def batches(self, ids: np.ndarray, batch_size: int, *, seed: int, shuffle: bool, rank: int = 0,
                world_size: int = 1) -> StreamBatches:
        # The rows are the text in order: nothing to shuffle or seed.
        return StreamBatches(ids, batch_size, self.seq_len, rank=rank, world_size=world_size)

    def loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
             state: State | None) -> tuple[torch.Tensor, State | None]:
        logits, new_state = model(x, state)  # (B, T, V); a None state starts from zeros
        return char_loss(logits, y), detach_state(new_state)

    def evaluate(self, model: CharLSTM, ids: np.ndarray, *, device: torch.device,
                 max_chars: int | None = None, progress: bool = False) -> EvalResult:
        return evaluate_stream(model, ids, device=device, max_chars=max_chars, progress=progress)

    def reader(self, model: CharLSTM, prompt: torch.Tensor, rows: int) -> StreamReader:
        return StreamReader(model, prompt, rows)

    @property
    def sample_prompt_length(self) -> int:
        return SAMPLE_PROMPT

    def default_prompt(self, vocab: Vocab, training_ids: Callable[[], np.ndarray | None],
                       rng: np.random.Generator) -> str:
        """A paragraph start, when the text has newlines; else a window of the training text."""
        if "\n" in vocab.index:
            return "\n"
        return super().default_prompt(vocab, training_ids, rng)


class StreamBatches:
    """Contiguous (B, T) batches whose rows continue across batches (see module doc)."""

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, rank: int = 0, world_size: int = 1):
        # With several processes the text is cut into batch_size * world_size rows and each
        # process takes its own batch_size of them: disjoint text, the same batch count.
        self.batch_size, self.seq_len = batch_size, seq_len
        rows = batch_size * world_size
        self.row_len = (len(ids) - 1) // rows
        if self.row_len < seq_len:
            raise CorpusError(
                f"text of {len(ids)} characters is too short for {rows} rows of "
                f"{seq_len}+1 characters; lower --batch-size or --seq-len"
            )
        n = rows * self.row_len
        mine = slice(rank * batch_size, (rank + 1) * batch_size)
        # Views, not copies: slices of a memmap reshape without reading the file.
        self.inputs = ids[:n].reshape(rows, self.row_len)[mine]
        self.targets = ids[1 : n + 1].reshape(rows, self.row_len)[mine]

    def __len__(self) -> int:
        return self.row_len // self.seq_len

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``k`` as (inputs, targets), each (B, T) int64."""
        cols = slice(k * self.seq_len, (k + 1) * self.seq_len)
        return to_tensor(self.inputs[:, cols]), to_tensor(self.targets[:, cols])

    def iterate(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Every epoch reads the same batches: the text, row by row, from its start."""
        for k in range(start, len(self)):
            yield (k, *self.batch(k))

    def describe(self) -> str:
        return (f"Sequences: {self.batch_size} rows x {len(self)} batches of {self.seq_len} "
                "characters per epoch")


@torch.no_grad()
def evaluate_stream(
    model: CharLSTM, ids: np.ndarray, *, device: torch.device, max_chars: int | None = None,
    rows: int = EVAL_ROWS, progress: bool = False,
) -> EvalResult:
    """Score every position of ``ids`` with state carried, as a stream model reads.

    The text is cut into up to ``rows`` contiguous rows scored in parallel (rows of at least
    512 characters); each row starts from a zero state, the same rule for every model.
    ``rows=1`` reads the whole text as one stream, every character after all before it.
    """
    if max_chars is not None:
        if max_chars < 1:
            raise ConfigError("max_chars must be at least 1")
        ids = ids[: max_chars + 1]
    if len(ids) < 2:
        raise CorpusError("need at least 2 characters to evaluate")
    rows = max(1, min(rows, (len(ids) - 1) // 512))
    row_len = (len(ids) - 1) // rows
    n = rows * row_len
    # Views of the (memory-mapped) ids: each chunk is read when it is scored.
    inputs, targets = ids[:n].reshape(rows, row_len), ids[1 : n + 1].reshape(rows, row_len)
    with evaluating(model):
        state = model.init_state(rows, device)
        total = torch.zeros((), device=device, dtype=torch.float64)
        for start in progress_bar(range(0, row_len, EVAL_CHUNK), progress, unit_scale=rows * EVAL_CHUNK):
            cols = slice(start, start + EVAL_CHUNK)
            x, y = to_tensor(inputs[:, cols]).to(device), to_tensor(targets[:, cols]).to(device)
            logits, state = model(x, state)  # (rows, chunk, V)
            state = detach_state(state)
            total += char_loss(logits, y).double() * y.numel()
    return EvalResult(loss=float(total) / n, characters=n)


class StreamReader:
    """A prompt read once, then one step per character with the state carried.

    Every row starts from the prompt's state, copied rather than re-read.
    """

    def __init__(self, model: CharLSTM, prompt: torch.Tensor, rows: int):
        self.model = model
        # Read the prompt once, batch 1, in chunks: a prompt of megabytes costs time, not memory.
        logits, state = prime(model, prompt[None, :])  # (1, V)
        self.state = tuple(s.expand(-1, rows, -1).contiguous() for s in state)  # (L, B, H) each
        self.logits = logits.expand(rows, -1).float()  # (B, V)
        self.stepper = LSTMStepper(model, self.state) if supports_fast_steps(model) else None

    def advance(self, ids: torch.Tensor) -> None:
        if self.stepper is not None:
            self.logits = self.stepper.step(ids)  # the state is updated in place
        else:
            logits, self.state = self.model(ids[:, None], self.state)  # (B, 1, V)
            self.logits = logits[:, -1]
