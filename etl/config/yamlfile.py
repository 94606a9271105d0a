"""Reading one YAML config file: syntax errors with line numbers, ``${ENV}`` substitution,
and a map from key paths to line numbers so that validation errors can point at the line."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from etl.errors import ConfigError

Loc = tuple[str | int, ...]

# ${VAR} or ${VAR:-default}; $${...} is a literal "${...}". Anything else inside ${...} is an error.
_ENV_REF = re.compile(r"\$\$|\$\{([^}]*)\}")
_ENV_BODY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


@dataclass
class YamlDoc:
    """A parsed YAML file: its data after ``${ENV}`` substitution and where each key sits."""

    path: Path
    label: str  # how messages name the file: relative to the project root
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)
    missing_env: list[tuple[Loc, str]] = field(default_factory=list)
    bad_env: list[tuple[Loc, str]] = field(default_factory=list)
    substituted: list[tuple[Loc, str]] = field(default_factory=list)
    env_names: list[str] = field(default_factory=list)  # ${VAR}s in values (comments never count)
    #: ``${name}`` references left for a job to fill (a mapping's lower-case variables)
    job_vars: list[tuple[Loc, str]] = field(default_factory=list)

    def where(self, loc: Loc) -> str:
        """``'jobs/x.yaml:7: connector'`` for a key path (line when known)."""
        line = None
        probe = loc
        while probe and line is None:
            line = self.lines.get(probe)
            probe = probe[:-1]
        key = format_loc(loc)
        prefix = f"{self.label}:{line}" if line else self.label
        return f"{prefix}: {key}" if key else prefix


def format_loc(loc: Loc) -> str:
    """Render a key path as ``columns.timestamp.date`` / ``filters[1].eq``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _line_index(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            child = (*loc, key)
            lines[child] = key_node.start_mark.line + 1
            _line_index(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*loc, index)
            lines[child] = item.start_mark.line + 1
            _line_index(item, child, lines)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (a silent override hides typos)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {seen[key]})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


JOB_VARIABLE = re.compile(r"[a-z][a-z0-9_]*")


def read_yaml(
    path: Path, label: str, env: dict[str, str] | None = None, job_vars: bool = False
) -> YamlDoc:
    """Parse ``path``; raise ConfigError naming file and line on a syntax error. With
    ``job_vars`` (mappings), a lower-case ``${name}`` is a job variable: left in place and listed
    in ``YamlDoc.job_vars`` for ``fill_job_vars``; upper-case names are environment variables."""
    env = dict(os.environ) if env is None else env
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read file ({exc.strerror})") from None
    try:
        node = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{label}:{mark.line + 1}" if mark else label
        problem = exc.problem or str(exc)
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        raise ConfigError(f"{where}: YAML syntax error: {problem}{context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{label}: YAML syntax error: {exc}") from None
    doc = YamlDoc(path=path, label=label, data=data)
    if node is not None:
        _line_index(node, (), doc.lines)
    doc.data = _substitute(data, (), doc, env, job_vars)
    return doc


def fill_job_vars(value: Any, values: dict[str, str]) -> Any:
    """``value`` (a document's data) with every ``${name}`` job variable in ``values`` replaced."""
    if isinstance(value, dict):
        return {k: fill_job_vars(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [fill_job_vars(v, values) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is not None and name in values:
            return values[name]
        return match.group(0)

    return _ENV_REF.sub(replace, value)


def _substitute(
    value: Any, loc: Loc, doc: YamlDoc, env: dict[str, str], job_vars: bool = False
) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, (*loc, k), doc, env, job_vars) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, (*loc, i), doc, env, job_vars) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        body = _ENV_BODY.fullmatch(match.group(1))
        if body is None:
            doc.bad_env.append((loc, match.group(0)))
            return match.group(0)
        name, default = body.group(1), body.group(2)
        if job_vars and default is None and JOB_VARIABLE.fullmatch(name):
            doc.job_vars.append((loc, name))
            return match.group(0)
        if name not in doc.env_names:
            doc.env_names.append(name)
        if env.get(name):
            resolved = env[name]
        elif default is not None:  # like the shell's ${VAR:-default}: unset or empty
            resolved = default
        elif name in env:
            resolved = env[name]
        else:
            doc.missing_env.append((loc, name))
            return match.group(0)
        if resolved:
            doc.substituted.append((loc, resolved))
        return resolved

    return _ENV_REF.sub(replace, value)
