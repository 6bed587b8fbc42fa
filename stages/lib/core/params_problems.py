"""Pydantic's validation errors of params.yaml as lines a user acts on: where, the value found, what is allowed."""

from __future__ import annotations

import difflib
import functools
import operator
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel

from stages.lib.core.params_types import AUTO, Count, SampleRows


def located(path: str) -> str:
    return f"params.yaml: {path}"


def short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bare(annotation: Any) -> Any:
    """`annotation` without Annotated[...] constraints and without Optional[...]."""
    if typing.get_origin(annotation) is Annotated:
        return _bare(typing.get_args(annotation)[0])
    options = [a for a in typing.get_args(annotation) if a is not type(None)]
    return _bare(options[0]) if typing.get_origin(annotation) is Union and len(options) == 1 else annotation


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is Annotated:
        return _type_name(typing.get_args(annotation)[0])
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Union:
        names = " or ".join(_type_name(a) for a in args if a is not type(None))
        return names + (" or null" if type(None) in args else "")
    if origin is list:
        plural = {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}
        return f"a list of {plural.get(_bare(args[0]), 'values')}"
    if origin is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return "a mapping"
    if origin is Literal:
        return "a string"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(annotation, str(annotation))


def _locate(loc: tuple, root: type[BaseModel]) -> tuple[str, Any, int]:
    """The key path (`tune.search_space.x.low`, `data.id_columns[0]`) and declared type at a pydantic
    loc, and how many parts of loc they cover: a problem inside an Optional or Union is the field's."""
    path, declared = "", root
    for depth, part in enumerate(loc):
        if typing.get_origin(declared) is Union:
            return path[1:], declared, depth
        inner = _bare(declared)
        if typing.get_origin(inner) is list:
            path, declared = f"{path}[{part}]", typing.get_args(inner)[0]
        elif typing.get_origin(inner) is dict:
            path, declared = f"{path}.{part}", typing.get_args(inner)[1]
        else:
            field = inner.model_fields.get(part)
            path, declared = f"{path}.{part}", field and field.annotation
    return path[1:], declared, len(loc)


_BOUNDS = {"greater_than_equal": ("ge", ">="), "less_than_equal": ("le", "<="),
           "greater_than": ("gt", ">"), "less_than": ("lt", "<")}


def problem(error: Mapping[str, Any], raw: Mapping, root: type[BaseModel]) -> str:
    """One pydantic error as a line for the user: where, the value found, and what is allowed."""
    kind, loc = error["type"], error["loc"]
    path, declared, depth = _locate(loc, root)
    # Within an Optional or Union, the value of the field as a whole, not of the member that failed.
    value = error["input"] if depth == len(loc) else functools.reduce(operator.getitem, loc[:depth], raw)
    if declared in (Count, SampleRows) and kind not in ("extra_forbidden", "invalid_key", "missing"):
        return _count_problem(path, value, 1 if declared == Count else 10, declared == SampleRows)
    if kind in ("extra_forbidden", "invalid_key"):
        known = list(_bare(_locate(loc[:-1], root)[1]).model_fields)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
        return f"{located(path)}: unknown key{hint}"
    if kind == "missing":
        return f"{located(path)} is missing; add it ({_type_name(declared)})"
    if kind in _BOUNDS:
        key, symbol = _BOUNDS[kind]
        limit = error["ctx"][key]
        return f"{located(path)} is {type(limit)(value)!r}; it must be {symbol} {limit}"
    inner = _bare(declared)
    if kind == "literal_error" and isinstance(value, str) and value:
        allowed = typing.get_args(inner)
        close = difflib.get_close_matches(value, allowed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{located(path)} is {value!r}; allowed: {', '.join(allowed)}{hint}"
    if kind == "model_type":
        expected = "a mapping of keys"
    elif kind in ("dict_type", "too_short"):
        expected = "a non-empty mapping"
    elif value == "" and typing.get_origin(inner) in (None, Literal):
        expected = "a non-empty string"
    else:
        expected = _type_name(declared)
    return f"{located(path)} is {value!r}; expected {expected}"


def _count_problem(path: str, value: Any, least: int, nullable: bool) -> str:
    """A Count or SampleRows (a whole number >= least, or auto, or null) is one line, whichever member
    of its union failed."""
    null = ", or null" if nullable else ""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{located(path)} is {value!r}; it must be >= {least}, or {AUTO}{null}"
    if isinstance(value, str) and value:
        close = difflib.get_close_matches(value, [AUTO], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{located(path)} is {value!r}; allowed: a whole number >= {least}, or {AUTO}{null}{hint}"
    return f"{located(path)} is {value!r}; expected an integer or {AUTO}{null}"
