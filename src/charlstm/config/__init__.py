"""Every setting of charlstm as frozen dataclasses, and the choices they offer.

These sit below everything else: checkpoints nest them, presets pin them and the CLI makes
its flags from their fields, so they depend on nothing but ``charlstm.errors``.
"""

from charlstm.config.corpus import CorpusConfig
from charlstm.config.model import ModelConfig
from charlstm.config.sample import SampleConfig
from charlstm.config.train import RESUMABLE_FIELDS, TrainConfig

__all__ = ["RESUMABLE_FIELDS", "CorpusConfig", "ModelConfig", "SampleConfig", "TrainConfig"]
