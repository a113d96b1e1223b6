"""The HTTP contract of `rnnlab serve`: the request, each answer and the one error shape, as pydantic models.

`/openapi.json` is built from them, and the request's schema from the server's own `ServeLimits`, so a client
generated from the schema (or a schema-driven fuzzer, as in tests/test_serve_contract.py) sends only what the
server accepts and is told of every status code it can get back.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from rnnlab.config import ServeLimits

# Every character `str.isspace` (and so `str.strip`) counts as blank; U+3000 is the last. A text needs one other.
_BLANKS = "".join(c for c in map(chr, range(0x3001)) if c.isspace())
NOT_BLANK = f"[^{_BLANKS}]"
"""The `pattern` of a text in the request schema: at least one character that is not whitespace."""


# JSON Schema's integers include 2.0; a strict int would refuse it (and true, "2" and 2.5 stay refused).
_Count = Annotated[int, Field(ge=1), BeforeValidator(lambda v: int(v) if isinstance(v, float) and v.is_integer() else v)]


class _Model(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)  # the docstrings below become the schema's descriptions


class ClassifyRequest(_Model):
    model_config = ConfigDict(extra="forbid", strict=True)  # as the schema says: `"explain": 0` is no boolean
    inputs: str | list[str]
    """One text, or a list of texts; each needs a character that is not whitespace."""
    top_k: _Count | None = None
    """Return only the `top_k` most probable classes per text (default: all)."""
    explain: bool = False
    """Add each token's attribution (gradient × input) towards the predicted class."""


def classify_request_schema(limits: ServeLimits) -> dict[str, Any]:
    """`ClassifyRequest`'s JSON schema with the limits the server enforces on each text and on their number."""
    schema = ClassifyRequest.model_json_schema()
    text = {"type": "string", "minLength": 1, "maxLength": limits.max_chars, "pattern": NOT_BLANK}
    texts = {"type": "array", "items": text, "minItems": 1, "maxItems": limits.max_inputs}
    schema["properties"]["inputs"] = {**schema["properties"]["inputs"], "anyOf": [text, texts]}
    return schema


class ErrorDetail(_Model):
    type: str
    """A short name for the kind of error (`invalid`, `too_large`, `overloaded`, …)."""
    message: str
    """One line saying what was wrong, naming the field at fault (`body.inputs.1: …`)."""
    request_id: str
    """Also sent as the `X-Request-ID` header (a client may send its own)."""


class ErrorBody(_Model):
    """The shape of every answer that is not 2xx."""

    error: ErrorDetail


class Status(_Model):
    status: str


class Info(_Model):
    model_config = ConfigDict(extra="allow")
    run: str
    engine: str
    encoder: str
    head: str
    labels: list[str]
    max_length: int
    """Tokens the model reads per text (per window with --chunks)."""
    truncation: str
    temperature: float
    """The calibration temperature dividing the logits (1: uncalibrated)."""
    test_accuracy: float | None
    limits: ServeLimits
    api_key_required: bool


class Score(_Model):
    label: str
    score: float


class TokenScore(_Model):
    token: str
    score: float
    """Gradient × input towards the predicted label: positive pushed towards it."""


class Result(_Model):
    index: int
    """The text's place in `inputs`."""
    label: str
    score: float
    scores: list[Score]
    """Every class (or the `top_k` best), most probable first."""
    n_tokens: int
    """Tokens in the whole text, special tokens included, before truncation."""
    truncated: bool
    tokens: list[TokenScore] | None = None
    """With `explain` only: every token the model read, with its attribution."""


class ClassifyResponse(_Model):
    results: list[Result]
    """One per text, in the order of `inputs`."""
    model: str
    """The run's folder name."""


_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
_ERRORS: dict[int, tuple[str, dict[str, Any]]] = {
    400: ("the body is not JSON, or a text is blank", {}),
    401: ("missing or wrong API key (only when the server has one)",
          {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}),
    413: ("the body is larger than `max_body_bytes`", {}),
    422: ("a field is missing, unknown, of the wrong type or past a limit; or `explain` on a run read in windows", {}),
    429: ("more texts are waiting than `max_queue`", _RETRY_AFTER),
    500: ("the model failed on this request (the next one is served as usual)", {}),
    503: ("the model is still loading (with `Retry-After`) or failed to load", _RETRY_AFTER),
    504: ("no answer within `timeout_s`", {}),
}  # fmt: skip


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """FastAPI's `responses=` for these status codes, each with the one error shape."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        description, headers = _ERRORS[code]
        responses[code] = {"model": ErrorBody, "description": description, **({"headers": headers} if headers else {})}
    return responses
