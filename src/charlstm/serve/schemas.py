"""What the HTTP service accepts and returns: its limits, request bodies and response bodies.

The request model is built per app from its ``ServeLimits``, so an over-limit field fails
validation like any other bad field (422 naming it) and the limits show in the OpenAPI docs.
"""

# No ``from __future__ import annotations`` here or in serve.py: FastAPI and pydantic read these
# annotations at run time, and the request model is a class made inside a function, which string
# annotations resolved against the module's globals could not find.

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WrapValidator
from pydantic_core import PydanticCustomError

from charlstm.config.ranges import Range, check_ranges
from charlstm.generation.items import NEW_ONLY_DRAWS
from charlstm.generation.stops import MAX_STOP_CHARS, MAX_STOPS


def unicode_text(text: Any) -> Any:
    """Refuse a lone surrogate (JSON can write one as an escape): it is no character, and no UTF-8.

    Run before the string's own checks (a non-string is left to them), so that a length bound
    on a text field stays the string's own, and its error speaks of characters, not of items.
    """
    if isinstance(text, str):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PydanticCustomError("unicode_text", "not Unicode text: a lone surrogate {char} at {index}",
                                      {"char": repr(text[exc.start]), "index": exc.start}) from None
    return text


def one_error(message: str) -> WrapValidator:
    """A union field's errors as one plain message.

    pydantic reports each branch of a union under a place named after its validators, reprs and
    all (``stop.function-after[functools.partial(<function max_length_validator at 0x...>...``),
    which tells a client nothing; the message says what the field takes instead.
    """

    def validate(value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:  # a lone surrogate is worth its own, plain, message
            own = [str(e["msg"]) for e in exc.errors() if e["type"] == "unicode_text"]
            raise PydanticCustomError("invalid", "{message}", {"message": (own or [message])[0]}) from None

    return WrapValidator(validate)


Text = Annotated[str, BeforeValidator(unicode_text)]
# Bounds before the validator, so that they are the string's own (in a union they would otherwise
# be checked after it, as "Value should have at most 1 item").
Char = Annotated[str, Field(min_length=1, max_length=1), BeforeValidator(unicode_text)]
Stop = Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS), BeforeValidator(unicode_text)]
Stops = Annotated[Stop | Annotated[list[Stop], Field(max_length=MAX_STOPS)] | None, one_error(
    f"a string or a list of at most {MAX_STOPS} strings, each of 1 to {MAX_STOP_CHARS} characters")]


MAX_LABEL_CHARS = 200  # a label is one of the model's, which the preparation keeps short


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
        check_ranges(self, LIMIT_RANGES)


# What each limit may be set to: the service allocates for them at start-up, so a huge one is a
# crash, not a generous server. max_concurrent is the rows of state (and, per-request, the
# threads) held for every model: 1024 rows of a 2 x 512 model with their noise blocks take about
# 100 MB. At a few thousand characters a second, a 100,000-character sample is most of a minute's
# work, and a prompt that long is read in one pass. The CLI's help states these; a test keeps it so.
LIMIT_RANGES = {
    "max_prompt_chars": Range(1, 100_000), "max_length": Range(1, 100_000),
    "max_num_samples": Range(1, 1024), "max_concurrent": Range(1, 1024),
}


class GenerateRequestBase(BaseModel):
    """Fields whose bounds do not depend on the limits; ``request_model`` adds the rest."""

    # A misspelt field is an error, not silently ignored; strict: `"length": true` is no number.
    model_config = ConfigDict(extra="forbid", strict=True)

    model: Text | None = Field(None, description="A served model's name (default: the first one).")
    temperature: float = Field(1.0, gt=0, le=100, allow_inf_nan=False, description="<1 sharper, >1 flatter.")
    top_k: int | None = Field(None, ge=1, description="Keep the k most likely characters.")
    top_p: float | None = Field(None, gt=0, le=1, allow_inf_nan=False,
                                description="Keep the smallest set whose probability reaches p.")
    min_p: float | None = Field(None, gt=0, le=1, allow_inf_nan=False,
                                description="Keep characters at least min_p times as likely as the best.")
    greedy: bool = Field(False, description="Always the most likely character (sampling fields ignored).")
    dry_multiplier: float | None = Field(None, gt=0, le=100, allow_inf_nan=False, description=(
        "Repetition control (DRY): penalise the character that would extend a repeat longer than "
        "dry_allowed_length by this x dry_base^(excess) (null: off)."))
    dry_base: float = Field(1.75, gt=1, le=10, allow_inf_nan=False, description="Growth of DRY's penalty.")
    dry_allowed_length: int = Field(12, ge=1, le=1000, description="Repeats this long go unpenalised.")
    best_of: int = Field(1, ge=1, le=64, description=(
        "Draw this many for each sample, keep the most likely (mean log-probability); sent whole."))
    beam: int | None = Field(None, ge=1, le=64, description=(
        "Beam search of this width for the most likely continuation(s) (no sampling fields); sent whole."))
    seed: int | None = Field(None, ge=0, lt=2**63,
                             description="Same seed, same text (default: drawn at random and reported).")
    unknown: Literal["error", "drop", "replace"] = Field(
        "error", description="Prompt characters outside the vocabulary: 422 listing them, drop or replace."
    )
    replacement: Char | None = Field(None, description="The character unknown='replace' uses.")
    stop: Stops = Field(None, description=f"Up to {MAX_STOPS} strings; a sample ends when its text ends "
                                          "with one, which is left out of the text.")
    new_only: bool = Field(False, description="A records model: only items not in the training list "
                                              f"(drawing at most {NEW_ONLY_DRAWS} x items).")


def request_model(limits: ServeLimits) -> type[GenerateRequestBase]:
    """The request body of both generate endpoints, bounded by ``limits``."""
    Label = Annotated[str, Field(min_length=1, max_length=MAX_LABEL_CHARS), BeforeValidator(unicode_text)]
    Labels = Annotated[Label | Annotated[list[Label], Field(min_length=1, max_length=limits.max_num_samples)]
                       | None, one_error(f"a label or a list of 1 to {limits.max_num_samples} labels")]

    class GenerateRequest(GenerateRequestBase):
        prompt: Text = Field("", max_length=limits.max_prompt_chars,
                            description="Text to continue (empty: the model's default start).")
        length: int = Field(min(200, limits.max_length), ge=0, le=limits.max_length,
                            description="New characters per sample.")
        num_samples: int = Field(1, ge=1, le=limits.max_num_samples,
                                 description="Samples generated together, as one batch.")
        items: int | None = Field(None, ge=1, le=limits.max_num_samples,
                                  description="A records model: this many whole items (default: "
                                              "num_samples); the prompt begins each, length bounds the rest.")
        label: Labels = Field(None, description="A records model with labels: the items' label, or a list "
                                                "taken in turn (default: drawn as often as in training).")
    return GenerateRequest


class ItemOut(BaseModel):
    text: str = Field(description="The whole item, prompt included (never a start, end or label symbol).")
    label: str | None
    novel: bool | None = Field(description="Not in the training list (null: the list is not at hand).")
    complete: bool = Field(description="It reached its end (false: cut at length, a stop or a cancel).")


class GenerateResponse(BaseModel):
    model: str
    prompt: str = Field(description="The prompt as the model read it: cleaned, unknown characters handled.")
    texts: list[str] = Field(description="The new text of each sample (item), prompt excluded.")
    seed: int
    finish_reasons: list[str] = Field(description="Per sample: length, stop (a stop sequence, or an item's "
                                                  "end) or cancelled.")
    characters: int = Field(description="New characters, all samples together (items: all drawn).")
    elapsed_s: float
    chars_per_s: float
    items: list[ItemOut] | None = Field(None, description="A records model: the items, in the texts' order.")
    drawn: int | None = Field(None, description="A records model: items drawn in all (new_only draws more).")
    new: int | None = Field(None, description="Of the drawn, how many are not in the training list.")


class ErrorResponse(BaseModel):
    """Every 4xx and 503 body: a message, and the request field at fault when there is one."""

    error: str
    field: str | None = None
    unknown_characters: list[str] | None = None
    detail: list[dict[str, Any]] | None = Field(None, description="pydantic's errors, for bad fields.")


class BitsPerChar(BaseModel):
    split: Literal["val", "train"]
    value: float


class ItemsFacts(BaseModel):
    format: str = Field(description="How its list was read: lines, paragraphs, csv, tsv or jsonl.")
    labels: list[str]
    label_counts: list[int] = Field(description="Training items of each label.")
    training_list: bool = Field(description="The training list is at hand: items are marked new or known.")


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
    items: ItemsFacts | None = Field(None, description="A records model (a list of things): its labels.")


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
