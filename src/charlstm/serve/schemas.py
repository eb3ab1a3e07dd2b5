"""What the HTTP service accepts and returns: its limits, request bodies and response bodies.

The request model is built per app from its ``ServeLimits``, so an over-limit field fails
validation like any other bad field (422 naming it) and the limits show in the OpenAPI docs.
"""

# No ``from __future__ import annotations`` here or in serve.py: FastAPI and pydantic read these
# annotations at run time, and the request model is a class made inside a function, which string
# annotations resolved against the module's globals could not find.

from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from charlstm.errors import ConfigError
from charlstm.generation.stops import MAX_STOP_CHARS, MAX_STOPS


def unicode_text(text: str) -> str:
    """Refuse a lone surrogate (JSON can write one as an escape): it is no character, and no UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not Unicode text: a lone surrogate {text[exc.start]!r} at {exc.start}") from None
    return text


Text = Annotated[str, AfterValidator(unicode_text)]
Stop = Annotated[Text, Field(min_length=1, max_length=MAX_STOP_CHARS)]
Stops = Stop | Annotated[list[Stop], Field(max_length=MAX_STOPS)] | None


def stop_list(stop: str | list[str] | None) -> tuple[str, ...]:
    """The ``stop`` field as a tuple: one string, a list, or none."""
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


@dataclass(frozen=True)
class ServeLimits:
    """Bounds on what one request may ask and on how many generations run at once."""

    max_prompt_chars: int = 4000  # the prompt is read in one forward pass: its length is memory
    max_length: int = 2000  # new characters per sample; with max_num_samples, bounds one request's work
    max_num_samples: int = 8  # samples run as one batch, so each costs memory, not an extra pass
    max_concurrent: int = 16  # samples generating at once (the slots); more get 503

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, not {value}")


class GenerateRequestBase(BaseModel):
    """Fields whose bounds do not depend on the limits; ``request_model`` adds the rest."""

    # A misspelt field is an error, not silently ignored; strict: `"length": true` is no number.
    model_config = ConfigDict(extra="forbid", strict=True)

    model: Text | None = Field(None, description="A served model's name (default: the first one).")
    temperature: float = Field(1.0, gt=0, le=100, allow_inf_nan=False, description="<1 sharper, >1 flatter.")
    top_k: int | None = Field(None, ge=1, description="Keep the k most likely characters.")
    top_p: float | None = Field(None, gt=0, le=1, allow_inf_nan=False,
                                description="Keep the smallest set whose probability reaches p.")
    greedy: bool = Field(False, description="Always the most likely character (sampling fields ignored).")
    seed: int | None = Field(None, ge=0, lt=2**63,
                             description="Same seed, same text (default: drawn at random and reported).")
    unknown: Literal["error", "drop", "replace"] = Field(
        "error", description="Prompt characters outside the vocabulary: 422 listing them, drop or replace."
    )
    replacement: Text | None = Field(None, min_length=1, max_length=1,
                                     description="The character unknown='replace' uses.")
    stop: Stops = Field(None, description=f"Up to {MAX_STOPS} strings; a sample ends when its text ends "
                                          "with one, which is left out of the text.")


def request_model(limits: ServeLimits) -> type[GenerateRequestBase]:
    """The request body of both generate endpoints, bounded by ``limits``."""

    class GenerateRequest(GenerateRequestBase):
        prompt: Text = Field("", max_length=limits.max_prompt_chars,
                            description="Text to continue (empty: the model's default start).")
        length: int = Field(min(200, limits.max_length), ge=0, le=limits.max_length,
                            description="New characters per sample.")
        num_samples: int = Field(1, ge=1, le=limits.max_num_samples,
                                 description="Samples generated together, as one batch.")

    return GenerateRequest


class GenerateResponse(BaseModel):
    model: str
    prompt: str = Field(description="The prompt as the model read it: cleaned, unknown characters handled.")
    texts: list[str] = Field(description="The new text of each sample, prompt excluded.")
    seed: int
    finish_reasons: list[str] = Field(description="Per sample: length, stop (a stop sequence) or cancelled.")
    characters: int = Field(description="New characters, all samples together.")
    elapsed_s: float
    chars_per_s: float


class ErrorResponse(BaseModel):
    """Every 4xx and 503 body: a message, and the request field at fault when there is one."""

    error: str
    field: str | None = None
    unknown_characters: list[str] | None = None
    detail: list[dict[str, Any]] | None = Field(None, description="pydantic's errors, for bad fields.")


class BitsPerChar(BaseModel):
    split: Literal["val", "train"]
    value: float


class ModelInfo(BaseModel):
    name: str
    checkpoint: str = Field(description="The checkpoint's file name.")
    framing: str
    vocab_size: int
    vocab: list[str]
    parameters: int
    bits_per_char: BitsPerChar | None = Field(None, description="Best held-out (else training) bits/char.")
    best_val: dict[str, Any] | None = None
    last_eval: dict[str, Any]
    progress: dict[str, Any]
    config: dict[str, dict[str, Any]] = Field(description="The run's model, train and corpus configs.")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    """OpenAI's list of models (object, data), with charlstm's own fields beside it."""

    object: Literal["list"]
    data: list[ModelCard]
    models: list[str]
    default: str
    limits: dict[str, int]


class Health(BaseModel):
    status: Literal["ok"]
    models: list[str]
    active_generations: int
    max_concurrent: int
