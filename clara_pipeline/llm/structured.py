"""Structured output: the `response_format` to ask for, and reading a JSON object out of a model's reply.

Three modes, tried in this order and remembered per client and model once one works:

- `json_schema`: the server constrains decoding to our schema (OpenAI structured outputs, vLLM, recent
  Ollama). The schema is pydantic's, made strict-compatible (every property required, no extra keys,
  only keywords strict mode accepts); the stricter rules stay in pydantic and are checked here anyway.
- `json_object`: JSON mode, any JSON object; the prompt describes the shape.
- `prompt`: no `response_format` at all, for servers that reject both; the prompt still asks for JSON.

Replies are parsed tolerantly: ```json fences and prose before or after the object are skipped.
"""

from __future__ import annotations

import functools
import json
from typing import Any, TypeVar

import pydantic

M = TypeVar("M", bound=pydantic.BaseModel)

MODES = ("json_schema", "json_object", "prompt")

# Keywords OpenAI's strict mode accepts; others (default, minLength, ...) make it reject the whole request.
_STRICT_KEYWORDS = {
    "type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf", "$ref",
    "$defs", "description", "title", "minItems", "maxItems", "pattern", "format", "minimum", "maximum",
}


class OutputInvalid(ValueError):
    """A reply that is not the JSON object we asked for; the message is fed back to the model on a re-ask."""


@functools.lru_cache(maxsize=None)
def strict_json_schema(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    """`model`'s JSON schema in the form strict structured output accepts.

    Cached: it is sent with every request and generating it costs about a millisecond. The dict is
    shared, so treat it as read-only.
    """
    return _strict(model.model_json_schema())


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key not in _STRICT_KEYWORDS:
            continue
        if key in ("properties", "$defs"):
            out[key] = {name: _strict(sub) for name, sub in value.items()}
        else:
            out[key] = _strict(value)
    if out.get("type") == "object" and "properties" in out:
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
    return out


def response_format(mode: str, name: str, model: type[pydantic.BaseModel]) -> dict[str, Any] | None:
    """The `response_format` argument for `mode` (None for "prompt": send none)."""
    if mode == "json_schema":
        return {"type": "json_schema",
                "json_schema": {"name": name, "schema": strict_json_schema(model), "strict": True}}
    if mode == "json_object":
        return {"type": "json_object"}
    if mode == "prompt":
        return None
    raise ValueError(f"unknown structured-output mode {mode!r}; expected one of {MODES}")


def extract_json_object(text: str | None) -> dict[str, Any]:
    """The first JSON object in `text`, skipping code fences and any prose around it.

    Raises:
        OutputInvalid: no complete JSON object is found (empty reply, prose only, cut-off JSON).
    """
    if text is None or not text.strip():
        raise OutputInvalid("the reply was empty; expected one JSON object")
    stripped = text.strip()
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        return value
    decoder = json.JSONDecoder()
    # A fence or prose before the object: try each "{" in turn; raw_decode ignores what follows the object.
    position = stripped.find("{")
    while position != -1:
        try:
            value, _ = decoder.raw_decode(stripped, position)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
        position = stripped.find("{", position + 1)
    if "{" in stripped:
        raise OutputInvalid("the reply has a '{' but no complete JSON object (malformed or cut off)")
    raise OutputInvalid("the reply contains no JSON object")


def parse_output(text: str | None, model: type[M], context: dict[str, Any] | None = None) -> M:
    """`text` parsed and validated as `model` (with pydantic validation `context`).

    Raises:
        OutputInvalid: not JSON, or JSON that breaks the schema or a rule; the message lists each problem
            with its location, in a form a model can act on.
    """
    data = extract_json_object(text)
    try:
        return model.model_validate(data, context=context)
    except pydantic.ValidationError as exc:
        raise OutputInvalid(describe_validation_error(exc)) from None


def describe_validation_error(exc: pydantic.ValidationError, limit: int = 8) -> str:
    problems = []
    for error in exc.errors()[:limit]:
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        problems.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(problems)
    if more > 0:
        problems.append(f"... and {more} more")
    return "; ".join(problems)
