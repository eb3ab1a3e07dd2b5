"""What the HTTP service accepts and returns: its limits, request bodies and response bodies.

The request model is built per app from its ``ServeLimits``, so an over-limit field fails
validation like any other bad field (422 naming it) and the limits show in the OpenAPI docs.
"""

# No ``from __future__ import annotations`` here or in serve.py: FastAPI and pydantic read these
# annotations at run time, and the request model is a class made inside a function, which string
# annotations resolved against the module's globals could not find.

from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from charlstm.errors import ConfigError


@dataclass(frozen=True)
class ServeLimits:
    """Bounds on what one request may ask and on how many generations run at once."""

    max_prompt_chars: int = 4000  # the prompt is read in one forward pass: its length is memory
    max_length: int = 2000  # new characters per sample; with max_num_samples, bounds one request's work
    max_num_samples: int = 8  # samples run as one batch, so each costs memory, not an extra pass
    max_concurrent: int = 16  # generations running at once (one worker thread each); more get 503

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, not {value}")


class GenerateRequestBase(BaseModel):
    """Fields whose bounds do not depend on the limits; ``request_model`` adds the rest."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored

    model: str | None = Field(None, description="A served model's name (default: the first one).")
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
    replacement: str | None = Field(None, min_length=1, max_length=1,
                                    description="The character unknown='replace' uses.")


def request_model(limits: ServeLimits) -> type[GenerateRequestBase]:
    """The request body of both generate endpoints, bounded by ``limits``."""

    class GenerateRequest(GenerateRequestBase):
        prompt: str = Field("", max_length=limits.max_prompt_chars,
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


class ModelList(BaseModel):
    models: list[str]
    default: str
    limits: dict[str, int]


class Health(BaseModel):
    status: Literal["ok"]
    models: list[str]
    active_generations: int
    max_concurrent: int
