"""The spec's fields as pydantic holds them (bounds, defaults, choices), by dotted path: what the frontend's
reading of the JSON Schema (specform.js `fieldBounds`) and the submit form's inputs must give. Read from
the models' fields, not from the schema, so a wrong walk of `$ref`/`anyOf` cannot agree with itself."""

from __future__ import annotations

import types
from typing import Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from stepscope.spec import ExperimentSpec

# The largest integer JavaScript holds exactly (Number.MAX_SAFE_INTEGER): the form cannot send more.
JS_EXACT = 2**53 - 1
JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string", list: "array"}


def _options(annotation) -> list:
    return [*get_args(annotation)] if get_origin(annotation) is Literal else []


def _nested_model(annotation) -> type[BaseModel] | None:
    """The model of a field that is one (`Probes`) or an optional one (`TaskRef | None`)."""
    alternatives = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else ()
    for candidate in (annotation, *alternatives):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _holds_models(annotation) -> bool:
    """A list of models (variants, sweeps): no input of the form's top fields."""
    return any((isinstance(a, type) and issubclass(a, BaseModel)) or _holds_models(a) for a in get_args(annotation))


def spec_field(path: str) -> dict:
    """{type, min, max, default, nullable, options} of the spec's field at `path` ("steps", "task.seed").

    `default` is absent for a default computed by a factory (the schema states none); integer bounds
    are limited to what JavaScript holds exactly, as fieldBounds documents.
    """
    model: type[BaseModel] = ExperimentSpec
    *parents, name = path.split(".")
    for parent in parents:
        model = _nested_model(model.model_fields[parent].annotation)
    info = model.model_fields[name]
    annotation = info.annotation
    alternatives = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    nullable = type(None) in alternatives
    others = [a for a in alternatives if a is not type(None)]
    inner = others[0] if len(others) == 1 else None
    json_type = "string" if _options(inner) else JSON_TYPES.get(get_origin(inner) or inner)
    low = [m.ge for m in info.metadata if isinstance(m, Ge)]
    high = [m.le for m in info.metadata if isinstance(m, Le)]
    if json_type == "integer":  # an exclusive bound of an integer is the next integer in
        low += [m.gt + 1 for m in info.metadata if isinstance(m, Gt)]
        high += [m.lt - 1 for m in info.metadata if isinstance(m, Lt)]
    exact = (lambda n: max(-JS_EXACT, min(JS_EXACT, n))) if json_type == "integer" else (lambda n: n)
    out = {
        "type": json_type,
        "min": exact(low[0]) if low else None,
        "max": exact(high[0]) if high else None,
        "nullable": nullable,
        "options": _options(inner),
    }
    if info.default is not PydanticUndefined:
        out["default"] = info.default
    return out


def spec_scalar_paths() -> list[str]:
    """Every field of the spec that one input could hold: its own and those of the models it nests
    (probes.*, task.*); not the lists of variants and sweeps."""
    paths = []
    for name, info in ExperimentSpec.model_fields.items():
        nested = _nested_model(info.annotation)
        if nested is not None:
            paths += [f"{name}.{sub}" for sub in nested.model_fields]
        elif not _holds_models(info.annotation):
            paths.append(name)
    return paths
