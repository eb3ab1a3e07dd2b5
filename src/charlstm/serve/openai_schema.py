"""The body of OpenAI's ``POST /v1/completions`` as charlstm takes it (see openai_api.py)."""

# No ``from __future__ import annotations``: see schemas.py.

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from charlstm.serve.logprobs import MAX_LOGPROBS
from charlstm.serve.schemas import Char, ServeLimits, Stops, Text, one_error


class StreamOptions(BaseModel):
    include_usage: bool = False


def completion_request(limits: ServeLimits) -> type[BaseModel]:
    """The body of ``POST /v1/completions``, bounded by ``limits``."""
    Prompt = Annotated[Text | list[Text], one_error("a string or a list of strings")]

    class CompletionRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)

        model: Text | None = Field(None, description="A served model (default: the first one).")
        prompt: Prompt = Field("", description="Text to continue, or a list of them (empty: the model's "
                                               "default start).")
        max_tokens: int = Field(16, ge=0, le=limits.max_length, description="New characters per choice.")
        temperature: float = Field(1.0, ge=0, le=2, allow_inf_nan=False, description="0: greedy.")
        top_p: float = Field(1.0, gt=0, le=1, allow_inf_nan=False)
        # validate_default: the check of prompts x n below must run when n is left out too.
        n: int = Field(1, ge=1, le=limits.max_num_samples, validate_default=True,
                       description="Choices per prompt.")
        stop: Stops = None
        seed: int | None = Field(None, ge=0, lt=2**63)
        stream: bool = False
        stream_options: StreamOptions | None = None
        echo: bool = Field(False, description="Put the prompt (as the model read it) before each text.")
        user: str | None = None  # accepted, unused
        top_k: int | None = Field(None, ge=1, description="charlstm: keep the k most likely characters.")
        min_p: float = Field(0.0, ge=0, le=1, allow_inf_nan=False, description="p >= min_p * p_max; 0: off")
        unknown: Literal["error", "drop", "replace"] = Field("error", description="charlstm: characters "
                                                                                   "outside the vocabulary.")
        replacement: Char | None = None
        logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS, description=(
            "Each character's log-probability under the model at temperature 1, with this many "
            "most likely ones."))
        dry_multiplier: float = Field(0.0, ge=0, le=100, allow_inf_nan=False, description=(
            "llama.cpp's DRY repetition control: penalise the character that would extend a repeat "
            "longer than dry_allowed_length by this x dry_base^(excess); 0: off."))
        dry_base: float = Field(1.75, gt=1, le=10, allow_inf_nan=False)
        dry_allowed_length: int = Field(12, ge=1, le=1000)
        # Before best_of, whose check reads it.
        use_beam_search: bool = Field(False, description="vLLM's: beam search of width best_of (default n).")
        best_of: int | None = Field(None, ge=1, le=64, description=(
            "Candidates drawn, best_of / n for each choice, the most likely kept (a multiple of n); "
            "with use_beam_search, the beam's width."))
        # OpenAI's fields a character model has no sound use for: only their neutral values.
        presence_penalty: float = 0.0
        frequency_penalty: float = 0.0
        logit_bias: dict[str, float] | None = None
        suffix: str | None = None

        # Field validators, not one for the whole body, so that each error names its field.
        # They run in the fields' order, so ``info.data`` holds the fields above the one checked.
        @field_validator("prompt")
        @classmethod
        def _prompts(cls, prompt: str | list[str]) -> str | list[str]:
            prompts = [prompt] if isinstance(prompt, str) else prompt
            if not prompts or any(len(p) > limits.max_prompt_chars for p in prompts):
                raise ValueError(f"give 1 or more prompts of at most {limits.max_prompt_chars} characters")
            return prompt

        @field_validator("n")
        @classmethod
        def _samples(cls, n: int, info: ValidationInfo) -> int:
            prompt = info.data.get("prompt", "")  # absent when the prompt was refused
            count = 1 if isinstance(prompt, str) else len(prompt)
            if count * n > limits.max_concurrent:
                raise ValueError(f"{count} prompts x n={n} is more than the "
                                 f"{limits.max_concurrent} samples served at once")
            return n

        @field_validator("best_of")
        @classmethod
        def _best_of(cls, value: int | None, info: ValidationInfo) -> int | None:
            n = info.data.get("n", 1)
            if value is not None and info.data.get("use_beam_search") and value < n:
                raise ValueError(f"a beam of best_of={value} keeps fewer continuations than n={n}")
            if value is not None and not info.data.get("use_beam_search") and value % n:
                raise ValueError(f"best_of must be a multiple of n ({n}): each choice is the best of "
                                 "best_of / n draws")
            return value

        @field_validator("presence_penalty", "frequency_penalty", "logit_bias", "suffix")
        @classmethod
        def _neutral(cls, value: Any, info: ValidationInfo) -> Any:
            if value:
                raise ValueError(f"{info.field_name} is not supported")
            return value

    return CompletionRequest
