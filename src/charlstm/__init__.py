"""charlstm: character-level LSTM language models, from the Keras tutorial onwards."""

from charlstm.config import CorpusConfig, ModelConfig, SampleConfig, TrainConfig
from charlstm.data.sources import load_text
from charlstm.data.vocab import Vocab
from charlstm.errors import CharLSTMError
from charlstm.generation.generators import generate_text
from charlstm.model.network import CharLSTM
from charlstm.presets import PRESETS
from charlstm.runs.loading import load_model
from charlstm.training.session import resume_run, start_run, train

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "CharLSTM",
    "CharLSTMError",
    "CorpusConfig",
    "ModelConfig",
    "SampleConfig",
    "TrainConfig",
    "Vocab",
    "generate_text",
    "load_model",
    "load_text",
    "resume_run",
    "start_run",
    "train",
]
