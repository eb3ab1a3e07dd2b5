"""The errors charlstm raises for mistakes a user can fix.

Each class carries the exit code the CLI returns for it, so scripts can tell a
bad text from a bad checkpoint without parsing messages.
"""


class CharLSTMError(Exception):
    """Base class: a message a user can act on, and the CLI's exit code."""

    exit_code = 1


class ConfigError(CharLSTMError):
    """An impossible or contradictory setting."""

    exit_code = 2


class CorpusError(CharLSTMError):
    """Input text that cannot be used: missing, undecodable, binary, too short."""

    exit_code = 3


class UnknownCharactersError(CorpusError):
    """Text holds characters the model's vocabulary does not have."""

    def __init__(self, unknown: list[str]):
        self.unknown = unknown
        shown = ", ".join(repr(c) for c in unknown)
        super().__init__(
            f"{len(unknown)} character(s) not in the model's vocabulary: {shown}; "
            "choose --unknown drop or --unknown replace to handle them"
        )


class CheckpointError(CharLSTMError):
    """A run folder or checkpoint file that is missing, corrupted or incompatible."""

    exit_code = 4


class TrainingDivergedError(CharLSTMError):
    """The loss became NaN or infinite."""

    exit_code = 5
