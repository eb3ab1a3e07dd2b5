"""The errors charlstm raises for mistakes a user can fix.

Each class carries the exit code the CLI returns for it, so scripts can tell a
bad text from a bad checkpoint without parsing messages.
"""


class CharLSTMError(Exception):
    """Base class: a message a user can act on, and the CLI's exit code.

    The message speaks of settings (``hidden_size``), as the library and the HTTP service
    know them; ``hint`` is an optional next step the CLI shows under it, which may name flags.
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


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
            "set unknown to drop or replace to handle them",
            hint="--unknown drop or --unknown replace",
        )


class CheckpointError(CharLSTMError):
    """A run folder or checkpoint file that is missing, corrupted or incompatible."""

    exit_code = 4


class TrainingDivergedError(CharLSTMError):
    """The loss became NaN or infinite."""

    exit_code = 5


class ServiceError(CharLSTMError):
    """The HTTP service cannot start: its address is taken or does not exist."""

    exit_code = 6
