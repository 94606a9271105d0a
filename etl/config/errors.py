"""How a validation problem in a project file is worded: one line per problem naming the file,
the line and the key (``mappings/x.yaml:7: columns.machine: missing required key``), with the
allowed or the closest key for an unknown one, and never a secret's value."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError

from etl.config.yamlfile import Loc, YamlDoc

#: keys whose values are secrets: never shown in a message, redacted from logs
SECRET_KEYS = ("password", "passwd", "secret", "token", "url", "store", "api_key")


def suggest(name: str, choices: list[str], what: str) -> str:
    """``did you mean 'x'? jobs: a, b, x``: the closest of ``choices`` to ``name``, and all of them."""
    close = difflib.get_close_matches(name, choices, n=1)
    listing = ", ".join(sorted(choices)) or "none"
    return (f"did you mean {close[0]!r}? " if close else "") + f"{what}: {listing}"


_TYPE_WORDS = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true/false",
    "bool_parsing": "true/false",
    "date_type": "a date",
    "date_parsing": "a date",
    "date_from_datetime_parsing": "a date",
    "datetime_type": "a date and time",
    "datetime_parsing": "a date and time",
    "list_type": "a list",
    "dict_type": "a mapping of keys",
    "model_type": "a mapping of keys",
    "model_attributes_type": "a mapping of keys",
}


def format_errors(
    exc: ValidationError, doc: YamlDoc, model: type[BaseModel], prefix: Loc = ()
) -> list[str]:
    """The problems of a ``model`` validation of ``doc`` (at ``prefix`` in it), one line each."""
    data_root = _at(doc.data if doc.data is not None else {}, prefix)
    data_root = {} if data_root is None else data_root
    missing_env = dict(doc.missing_env)
    grouped: dict[Loc, list[Any]] = {}
    for err in exc.errors(include_url=False):
        loc = tuple(_clean_loc(err["loc"], data_root))
        msg = str(err["msg"])
        for noise in ("Value error, ", "Assertion failed, "):
            msg = msg.replace(noise, "")
        if msg.startswith("@"):  # a cross-field rule that names the key it is about
            key, _, msg = msg[1:].partition(": ")
            loc = (*loc, *key.split("."))
            err = {**err, "msg": msg, "type": "value_error"}
        grouped.setdefault((*prefix, *loc), []).append(err)

    out: list[str] = []
    for loc, errors in grouped.items():
        first = errors[0]
        kind = first["type"]
        if loc in missing_env:
            msg = f"environment variable {missing_env[loc]} is not set"
        elif kind == "extra_forbidden":
            allowed = _allowed_keys(model, loc[len(prefix) : -1])
            key = str(loc[-1])
            lower = {a.lower(): a for a in allowed}
            close = difflib.get_close_matches(key.lower(), list(lower), n=1)
            msg = f"unknown key {key!r}" + (
                f" (did you mean {lower[close[0]]!r}?)" if close else ""
            )
            if allowed and not close:
                msg += f" (allowed: {', '.join(allowed)})"
        elif kind == "missing":
            msg = "missing required key"
        elif len(errors) > 1 and all(e["type"] in _TYPE_WORDS for e in errors):
            words = list(dict.fromkeys(_TYPE_WORDS[e["type"]] for e in errors))
            msg = f"expected {', '.join(words[:-1])} or {words[-1]}" + _got(first, loc)
        else:
            msg = str(first["msg"])
            for noise in ("Value error, ", "Assertion failed, "):
                msg = msg.replace(noise, "")
            if kind != "value_error":
                msg += _got(first, loc)
        out.append(f"{doc.where(loc)}: {msg}")
    return list(dict.fromkeys(out))


def _got(err: Any, loc: Loc) -> str:
    if "input" not in err or isinstance(err["input"], dict):
        return ""
    shown = err["input"]
    if any(part in str(loc[-1] if loc else "").lower() for part in SECRET_KEYS):
        shown = "***"
    return f" (got {shown!r})"


def _has(data: Any, key: Any) -> bool:
    if isinstance(data, dict):
        return key in data
    return isinstance(data, list) and isinstance(key, int) and 0 <= key < len(data)


def _at(data: Any, loc: Loc) -> Any:
    for part in loc:
        if not _has(data, part):
            return None
        data = data[part]
    return data


def _clean_loc(loc: tuple[Any, ...], data: Any) -> list[str | int]:
    """Keep the parts of a pydantic error location that are keys or indexes of the YAML data.

    Pydantic adds union-branch and validator markers (``str``, ``function-after[...]``) that mean
    nothing to the person editing the file; walking the data tells them apart from real keys.
    """
    out: list[str | int] = []
    for part in loc:
        key = "in" if part == "in_" else part
        if _has(data, key):
            out.append(key)
            data = data[key]
        elif isinstance(data, dict) and isinstance(key, str) and not _is_marker(key):
            out.append(key)  # a missing or unknown key
            data = None
    return out


def _is_marker(part: str) -> bool:
    return (
        "[" in part
        or part in ("str", "int", "float", "bool", "date", "datetime", "list", "dict")
        or (part[:1].isupper() and part.isidentifier() and part.endswith("Spec"))
    )


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        target = _model_in(current)
        if target is None:
            return []
        field_info = target.model_fields.get(part) or next(
            (f for f in target.model_fields.values() if f.alias == part), None
        )
        if field_info is None:
            return []
        current = field_info.annotation
    target = _model_in(current)
    if target is None:
        return []
    return [f.alias or name for name, f in target.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _model_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list, dict):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
