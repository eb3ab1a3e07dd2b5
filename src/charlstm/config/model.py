"""The architecture settings: ModelConfig."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from charlstm.config.choices import Cell, GateActivation, Init, InputEncoding, coerce_choices
from charlstm.config.ranges import FRACTION, SIZE, Range, check_ranges
from charlstm.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    """Architecture; ``vocab_size`` is filled in from the training text."""

    vocab_size: int = field(default=0, metadata={
        "help": "Characters the model knows; filled in from the training text."})
    cell: Cell = field(default=Cell.LSTM, metadata={
        "help": "The recurrent layer: LSTM, GRU or a plain tanh RNN."})
    input_encoding: InputEncoding = field(default=InputEncoding.EMBEDDING, metadata={
        "help": "How a character enters the first layer: a learnt embedding, a one-hot vector, or "
                "scalar, the tutorial's id / vocab_size."})
    embedding_size: int = field(default=64, metadata={
        "help": "Embedding width E, for embedding input (one-hot uses V features, scalar 1)."})
    # The default preset's size, chosen by measurement (docs/benchmarks.md): on Alice, 2 x 512 with
    # strong dropout beat 2 x 256 and 2 x 384 within 5 minutes on 2 CPU cores; the smaller ones
    # overfit. For corpora of many MB, less dropout (0.1-0.2) learns faster.
    hidden_size: int = field(default=512, metadata={
        "help": "Units per recurrent layer (H, as torch.nn.LSTM names it)."})
    num_layers: int = field(default=2, metadata={"help": "Recurrent layers stacked (L)."})
    dropout: float = field(default=0.5, metadata={
        "help": "Dropout between layers and before the head, as Keras's Dropout."})
    locked_dropout: bool = field(default=False, metadata={
        "help": "Share dropout's mask across every time step of a row (variational dropout)."})
    input_dropout: float = field(default=0.0, metadata={
        "help": "Locked dropout on the first layer's input features."})
    embedding_dropout: float = field(default=0.0, metadata={
        "help": "Drop whole characters from the embedding (embedding input only)."})
    weight_drop: float = field(default=0.0, metadata={
        "help": "DropConnect on the recurrent weights (AWD-LSTM); keeps the fused kernel."})
    init: Init = field(default=Init.PYTORCH, metadata={
        "help": "Weight initialisation; keras: glorot / orthogonal kernels, one bias vector with the "
                "forget gate at 1."})
    gate_activation: GateActivation = field(default=GateActivation.SIGMOID, metadata={
        "help": "The LSTM's gates; hard_sigmoid as Keras 2.0-2.2 (slower: not fused)."})

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
