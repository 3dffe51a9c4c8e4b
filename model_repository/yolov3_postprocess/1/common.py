"""A copy in every Python model's folder, as Triton loads each folder alone; the copies are equal.

What the Python models share, written once: box overlap (IoU), and Triton parameters (a request's
or config.pbtxt's) read into numbers. numpy only, like the models;
tests/model_repository/test_model_common.py checks that every model folder's copy is the same
bytes.
"""

from __future__ import annotations

import json
import math
import typing
from collections.abc import Mapping
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Number = int | float
Settings = TypeVar("Settings", bound="DataclassInstance")  # a dataclass of int and float fields


class ParameterError(ValueError):
    """A parameter that is unknown, missing or not a number of its kind."""


def overlap(a: np.ndarray, b: np.ndarray, method: str = "union") -> np.ndarray:
    """IoU [len(a), len(b)] of boxes (x1, y1, x2, y2), areas `(x2 - x1) * (y2 - y1)`; "min"
    divides by the smaller area instead of the union. 0 where the divisor is not positive."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    # One coordinate at a time: contiguous [len(a), len(b)] temporaries, 3x faster than [.., 2].
    width = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    height = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(0, width) * np.maximum(0, height)
    if method == "union":
        divisor = area_a[:, None] + area_b[None, :] - inter
    elif method == "min":
        divisor = np.minimum(area_a[:, None], area_b[None, :])
    else:
        raise ValueError(f"method must be 'union' or 'min', got {method!r}")
    result: np.ndarray = np.divide(inter, divisor, out=np.zeros_like(inter), where=divisor > 0)
    return result


def from_parameters(cls: type[Settings], values: Mapping[str, object]) -> Settings:
    """Dataclass `cls` (fields int or float) from config.pbtxt's parameters, which must name
    every field (they are the defaults' source). Raises ParameterError."""
    fields_: dict[str, Any] = parse_parameters(values, _kinds(cls), complete=True)
    return cls(**fields_)  # each value checked against its field's type above


def with_parameters(settings: Settings, values: str | Mapping[str, object]) -> Settings:
    """A copy of dataclass instance `settings` with Triton request parameters `values` (JSON
    text, as `request.parameters()` gives them, or a mapping) applied; every name must be one of
    its fields. Raises ParameterError."""
    changes: dict[str, Any] = parse_parameters(values, _kinds(type(settings)))
    return replace(settings, **changes)  # each value checked against its field's type above


def _kinds(cls: type[DataclassInstance]) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {field.name: hints[field.name] for field in fields(cls)}


def parse_parameters(
    values: str | Mapping[str, object], kinds: Mapping[str, type], complete: bool = False
) -> dict[str, Number]:
    """`values` (a mapping, or `request.parameters()`'s JSON text) as numbers of the kinds in
    `kinds`: numbers or numeric strings, finite, and whole for an int. Unknown names are
    refused, and with `complete` (config.pbtxt, the defaults' source) every name is required.
    Raises ParameterError saying what is wrong."""
    if isinstance(values, str):
        try:
            values = json.loads(values or "{}")
        except json.JSONDecodeError as exc:
            raise ParameterError(f"Parameters are not JSON: {exc}.") from None
        if not isinstance(values, dict):
            raise ParameterError(f"Parameters must be a JSON object, got {values!r}.")
    unknown = sorted(set(values) - set(kinds))
    if unknown:
        names = ", ".join(sorted(kinds))
        raise ParameterError(f"Unknown parameter '{unknown[0]}'; the parameters are: {names}.")
    missing = sorted(set(kinds) - set(values)) if complete else []
    if missing:
        raise ParameterError(f"config.pbtxt parameters {missing} are missing, and have no default.")
    return {name: _number(name, kinds[name], value) for name, value in values.items()}


def _number(name: str, kind: type, value: object) -> Number:
    if not isinstance(value, (int, float, str)):
        raise ParameterError(f"Parameter '{name}' must be a number, got {value!r}.")
    try:
        number = float(value)
    except ValueError:
        raise ParameterError(f"Parameter '{name}' must be a number, got {value!r}.") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise ParameterError(f"Parameter '{name}' must be a finite number, got {value!r}.")
    if kind is int:
        if not number.is_integer():
            raise ParameterError(f"Parameter '{name}' must be a whole number, got {value!r}.")
        return int(number)
    return number
