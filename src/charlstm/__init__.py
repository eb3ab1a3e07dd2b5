"""charlstm: character-level LSTM language models, from the Keras tutorial onwards."""

from charlstm.api import resume_run, start_run, train
from charlstm.corpus import CorpusConfig, Vocab, load_text
from charlstm.errors import CharLSTMError
from charlstm.generate import SampleConfig, generate_text
from charlstm.model import CharLSTM, ModelConfig
from charlstm.presets import PRESETS
from charlstm.runs import load_model
from charlstm.train import TrainConfig

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
