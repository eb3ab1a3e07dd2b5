"""How text becomes training examples and how a model reads text: stream, window or items framing.

``framing_for(train_config)`` is the one place a framing's name becomes its object.
"""

from charlstm.config.choices import FramingName
from charlstm.config.train import TrainConfig
from charlstm.framing.base import Batches, Framing, Reader
from charlstm.framing.items import ItemFraming
from charlstm.framing.stream import StreamFraming
from charlstm.framing.window import WindowFraming

FRAMINGS: dict[FramingName, type[Framing]] = {
    FramingName.STREAM: StreamFraming,
    FramingName.WINDOW: WindowFraming,
    FramingName.ITEMS: ItemFraming,
}


def framing_for(config: TrainConfig) -> Framing:
    """The framing a run was trained with."""
    return FRAMINGS[config.framing](config.seq_len)


__all__ = ["FRAMINGS", "Batches", "Framing", "ItemFraming", "Reader", "StreamFraming", "WindowFraming",
           "framing_for"]
