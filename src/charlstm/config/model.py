"""The architecture settings: ModelConfig."""

from __future__ import annotations

from dataclasses import dataclass, replace

from charlstm.config.choices import Cell, GateActivation, Init, InputEncoding, coerce_choices
from charlstm.config.ranges import FRACTION, SIZE, Range, check_ranges
from charlstm.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    """Architecture; ``vocab_size`` is filled in from the training text."""

    vocab_size: int = 0
    cell: Cell = Cell.LSTM
    input_encoding: InputEncoding = InputEncoding.EMBEDDING
    embedding_size: int = 64  # E for embedding input; one-hot uses V, scalar 1
    # The default preset's size, chosen by measurement (docs/benchmarks.md): on Alice, 2 x 512 with
    # strong dropout beat 2 x 256 and 2 x 384 within 5 minutes on 2 CPU cores; the smaller ones
    # overfit. For corpora of many MB, less dropout (0.1-0.2) learns faster.
    hidden_size: int = 512  # H, as torch.nn.LSTM names it
    num_layers: int = 2  # L
    dropout: float = 0.5  # between layers and before the head, as Keras Dropout
    locked_dropout: bool = False  # dropout's mask shared by every time step of a row (variational)
    input_dropout: float = 0.0  # locked dropout on the first layer's input features
    embedding_dropout: float = 0.0  # whole characters dropped from the embedding
    weight_drop: float = 0.0  # DropConnect on the recurrent weights (weight_hh)
    init: Init = Init.PYTORCH
    gate_activation: GateActivation = GateActivation.SIGMOID

    def __post_init__(self) -> None:
        coerce_choices(self)
        if self.gate_activation != GateActivation.SIGMOID and self.cell != Cell.LSTM:
            raise ConfigError("gate_activation applies to the lstm cell only")
        check_ranges(self, MODEL_RANGES)
        if (self.weight_drop or self.locked_dropout) and (
                self.cell != Cell.LSTM or self.gate_activation != GateActivation.SIGMOID):
            raise ConfigError("weight_drop and locked_dropout need the lstm cell with sigmoid gates")
        if self.embedding_dropout and self.input_encoding != InputEncoding.EMBEDDING:
            raise ConfigError("embedding_dropout needs input_encoding embedding")

    def without_dropout(self) -> ModelConfig:
        """The same architecture with every dropout off (the same weights fit it)."""
        return replace(self, dropout=0.0, input_dropout=0.0, embedding_dropout=0.0, weight_drop=0.0)

    @property
    def input_size(self) -> int:
        """Features per time step entering the first recurrent layer."""
        return {InputEncoding.EMBEDDING: self.embedding_size, InputEncoding.ONE_HOT: self.vocab_size,
                InputEncoding.SCALAR: 1}[self.input_encoding]


MODEL_RANGES = {
    "vocab_size": Range(0, 65_536),  # 0 until the text fills it in; token files hold uint16 ids
    "embedding_size": SIZE, "hidden_size": SIZE,
    "num_layers": Range(1, 64),  # far past where deeper char-LSTMs stop helping
    "dropout": FRACTION, "input_dropout": FRACTION, "embedding_dropout": FRACTION, "weight_drop": FRACTION,
}
