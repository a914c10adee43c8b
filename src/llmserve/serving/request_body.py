"""A JSON request body checked against its schema, and the 400 that names the first bad field.

The HTTP routes and batch lines both read bodies through `parse_body`, so a batch line that the
endpoint would refuse gets the endpoint's own 400 message, word for word.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from llmserve.errors import InvalidRequestError

B = TypeVar("B", bound=BaseModel)
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none", "dict", "list"})


def parse_body(schema: type[B], raw: bytes | str) -> B:
    """The JSON body validated against `schema`; a 400 naming the field otherwise."""
    try:
        return schema.model_validate_json(raw)
    except ValidationError as exc:
        raise from_pydantic(exc) from None


def from_pydantic(exc: ValidationError) -> InvalidRequestError:
    """A 400 for a body that failed schema validation."""
    return validation_error(exc.errors(include_url=False))


def validation_error(
    errors: Sequence[Any], *, drop_prefix: str | None = None
) -> InvalidRequestError:
    """A 400 for the first pydantic error, with `param` as a dotted field path (messages.0.role)."""
    first = _most_specific(errors)
    loc = [str(part) for part in first.get("loc", ()) if not _is_union_tag(part)]
    if drop_prefix is not None and loc[:1] == [drop_prefix]:
        loc = loc[1:]
    param = ".".join(loc) or None
    if first.get("type") == "missing":
        return InvalidRequestError(f"Missing required parameter: '{param}'.", param=param)
    if first.get("type") == "json_invalid":
        return InvalidRequestError(
            "We could not parse the JSON body of your request. The body must be valid JSON."
        )
    where = f" for '{param}'" if param else ""
    return InvalidRequestError(f"Invalid value{where}: {first.get('msg', '')}.", param=param)


def _is_union_tag(part: object) -> bool:
    """Pydantic names the union member in `loc` ("str", "list[TextPart]"); it is no field."""
    return isinstance(part, str) and (part in _TYPE_TAGS or "[" in part or "-" in part)


def _most_specific(errors: Sequence[Any]) -> Any:
    """The error of the first field that failed, from the union member that got furthest.

    The deepest error wins; at the same depth, a member whose type matched but whose value did
    not (`prompt: []`: a list, but empty) beats members of another type.
    """
    if not errors:
        return {"loc": (), "msg": "Invalid request body", "type": ""}
    field = tuple(errors[0].get("loc", ()))[:1]
    same_field = [e for e in errors if tuple(e.get("loc", ()))[:1] == field]
    return max(same_field, key=_progress)


def _progress(error: Any) -> tuple[int, bool, int]:
    """How far validation got before `error`: how deep in the body, then past the type check."""
    loc = tuple(error.get("loc", ()))
    depth = sum(1 for part in loc if not _is_union_tag(part))
    return (depth, not str(error.get("type", "")).endswith("_type"), len(loc))
