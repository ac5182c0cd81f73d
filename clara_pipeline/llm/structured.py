"""Structured output: the `response_format` to ask for, and reading a JSON object out of a model's reply.

Three modes, tried in this order and remembered per client and model once one works:

- `json_schema`: the server constrains decoding to our schema (OpenAI structured outputs, vLLM, recent
  Ollama). The schema is pydantic's, made strict-compatible (every property required, no extra keys,
  only keywords strict mode accepts), with the length limits (`maxLength`, `minItems`, `maxItems`) so a
  constrained decoder keeps to them; a server that refuses the length keywords gets the schema without
  them (OpenAI's strict mode refuses `maxLength`). The rules stay in pydantic and are checked anyway.
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

# String length keywords: vLLM, Ollama and others enforce them; OpenAI's strict mode refuses them.
LENGTH_KEYWORDS = frozenset({"minLength", "maxLength"})
# Keywords OpenAI's strict mode accepts; others (default, ...) make it reject the whole request.
_STRICT_KEYWORDS = {
    "type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf", "$ref",
    "$defs", "description", "title", "minItems", "maxItems", "pattern", "format", "minimum", "maximum",
}


class OutputInvalid(ValueError):
    """A reply that is not the JSON object we asked for; the message is fed back to the model on a re-ask."""


@functools.lru_cache(maxsize=None)
def strict_json_schema(model: type[pydantic.BaseModel], lengths: bool = True) -> dict[str, Any]:
    """`model`'s JSON schema in the form strict structured output accepts, with the string length limits
    unless `lengths` is False. Class docstrings are left out (they are for readers of the code).

    Cached: it is sent with every request and generating it costs about a millisecond. The dict is
    shared, so treat it as read-only.
    """
    return _strict(model.model_json_schema(), _STRICT_KEYWORDS | LENGTH_KEYWORDS if lengths else _STRICT_KEYWORDS)


def _strict(node: Any, keywords: frozenset[str] | set[str]) -> Any:
    if isinstance(node, list):
        return [_strict(x, keywords) for x in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key not in keywords or (key == "description" and "properties" in node):
            continue
        if key in ("properties", "$defs"):
            out[key] = {name: _strict(sub, keywords) for name, sub in value.items()}
        else:
            out[key] = _strict(value, keywords)
    if out.get("type") == "object" and "properties" in out:
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
    return out


def response_format(mode: str, name: str, model: type[pydantic.BaseModel],
                    lengths: bool = True) -> dict[str, Any] | None:
    """The `response_format` argument for `mode` (None for "prompt": send none); `lengths`: whether the
    schema carries the string length limits."""
    if mode == "json_schema":
        return {"type": "json_schema",
                "json_schema": {"name": name, "schema": strict_json_schema(model, lengths), "strict": True}}
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


def plain_validation_error(exc: pydantic.ValidationError, limit: int = 8) -> str:
    """Each problem of `exc` in plain words, with where it is ("qa_pairs: has 2 items; at least 3 are
    needed"), not pydantic's ("List should have at least 3 items"). Shown to users and sent on re-asks."""
    problems = []
    for error in exc.errors()[:limit]:
        where = ".".join(str(p) for p in error["loc"])
        text = _plain(error)
        problems.append(f"{where}: {text}" if where else text)
    more = exc.error_count() - len(problems)
    if more > 0:
        problems.append(f"and {more} more problem{'s' if more != 1 else ''}")
    return "; ".join(problems)


describe_validation_error = plain_validation_error  # the older name


def _plain(error: Any) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "value_error":
        return str(ctx.get("error", error["msg"].removeprefix("Value error, ")))
    if kind == "too_short" and "min_length" in ctx:
        return f"has {ctx.get('actual_length', 'too few')} items; at least {ctx['min_length']} are needed"
    if kind == "too_long" and "max_length" in ctx:
        return f"has {ctx.get('actual_length', 'too many')} items; at most {ctx['max_length']} are allowed"
    if kind == "missing":
        return "is missing"
    if kind in ("string_type", "str_type"):
        return "should be text"
    if kind in ("list_type", "model_type", "dict_type", "dataclass_type", "model_attributes_type"):
        return "has the wrong shape (expected " + {"list_type": "a list", "string_type": "text"}.get(kind, "an object") + ")"
    return error["msg"]
