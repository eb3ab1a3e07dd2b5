"""A text's character ids and back, as vLLM's server names these routes.

    POST /tokenize        {model, prompt}  -> {tokens: [ids], count}
    POST /detokenize      {model, tokens}  -> {prompt}
    GET  /tokenizer_info  ?model=NAME      -> {tokenizer_class, vocab_size, eos_token: null, ...}

``/tokenizer_info`` and ``add_special_tokens`` (false: a character model has no special tokens)
are what lm-evaluation-harness's remote tokenizer asks of a server, so its ``local-completions``
finds characters as its tokens by itself.

A token is a character, and its id is its place in the model's vocabulary (``GET /v1/model``'s
``vocab``, in order). ``/tokenize`` reads the prompt as a completion reads it, cleaned as the
training text was (lowercased and newlines made ``\\n`` where it was), so ``count`` is that
completion's ``usage.prompt_tokens``; an empty prompt is no ids (a completion would start from
the model's default instead). A character outside the vocabulary is a 422 listing it in
``unknown_characters``, field ``prompt``; an id outside it a 422, field ``tokens``; errors come
in the native API's shape. A records model's start, end and label symbols have ids too, but no
prompt may hold one.
"""

# No ``from __future__ import annotations``: see schemas.py.

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from charlstm.data.cleaning import clean_prompt
from charlstm.errors import CharLSTMError
from charlstm.serve.jobs import ApiError
from charlstm.serve.schemas import ErrorResponse, ServeLimits, Text
from charlstm.serve.worker import Service, api_error

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No model of that name"},
    422: {"model": ErrorResponse, "description": "A character or id outside the vocabulary, or a bad field"},
}


class Tokenized(BaseModel):
    tokens: list[int] = Field(description="Each character's id: its place in the model's vocabulary.")
    count: int


class Detokenized(BaseModel):
    prompt: str


def token_requests(limits: ServeLimits) -> tuple[type[BaseModel], type[BaseModel]]:
    """The bodies of ``/tokenize`` and ``/detokenize``, bounded by ``limits``."""

    class TokenizeRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)

        model: Text | None = Field(None, description="A served model (default: the first one).")
        prompt: Text = Field(max_length=limits.max_prompt_chars, description="Text, read as a prompt is.")
        add_special_tokens: bool = Field(False, description="vLLM's: a character model has none to add.")

    class DetokenizeRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)

        model: Text | None = Field(None, description="A served model (default: the first one).")
        # As long as a completion's echoed text may be.
        tokens: list[int] = Field(max_length=limits.max_prompt_chars + limits.max_length,
                                  description="Character ids, as /tokenize gives them.")

    return TokenizeRequest, DetokenizeRequest


def add_routes(app: FastAPI, service: Service, limits: ServeLimits) -> None:
    """``POST /tokenize`` and ``POST /detokenize`` on ``app``."""
    TokenizeRequest, DetokenizeRequest = token_requests(limits)

    @app.post("/tokenize", response_model=Tokenized, responses=ERRORS)
    async def tokenize(body: TokenizeRequest) -> dict[str, Any]:
        loaded = service.model(body.model).loaded
        try:
            ids = loaded.vocab.encode(clean_prompt(body.prompt, loaded.meta.corpus_config))
        except CharLSTMError as exc:  # unknown characters: listed, field "prompt"
            raise api_error(exc) from None
        return {"tokens": ids.tolist(), "count": len(ids)}

    @app.get("/tokenizer_info", responses=ERRORS)
    async def tokenizer_info(model: str | None = None) -> dict[str, Any]:
        loaded = service.model(model).loaded
        return {"tokenizer_class": "charlstm characters", "vocab_size": len(loaded.vocab),
                "model_max_length": limits.max_prompt_chars + limits.max_length,
                "eos_token": None, "bos_token": None, "pad_token": None, "chat_template": None}

    @app.post("/detokenize", response_model=Detokenized, responses=ERRORS)
    async def detokenize(body: DetokenizeRequest) -> dict[str, Any]:
        vocab = service.model(body.model).loaded.vocab
        bad = [(i, token) for i, token in enumerate(body.tokens) if not 0 <= token < len(vocab)]
        if bad:
            shown = ", ".join(f"tokens[{i}] = {token}" for i, token in bad[:10])
            raise ApiError(422, f"{shown}: not an id of this model's {len(vocab)} characters "
                                f"(0 to {len(vocab) - 1})", "tokens")
        return {"prompt": vocab.decode(body.tokens)}
