"""Recipe files as typed values: safe YAML reading and dataclasses built from mappings.

:func:`read_yaml` reads a recipe safely (a size limit, a limit on what aliases expand to, a
depth limit, no custom tags); :func:`build` makes a dataclass from a mapping with every key
and value checked (pydantic's lax rules per field type), so an unknown key or a value of the
wrong type is a one-line :class:`RecipeError` naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import yaml

from iad_pipeline.errors import IadError

MAX_RECIPE_BYTES = 256 * 1024
MAX_YAML_NODES = 20_000  # nodes after alias expansion: a recipe has a few hundred
MAX_YAML_DEPTH = 64


class RecipeError(IadError):
    """A recipe file that cannot be used."""


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, so no message grows with the input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _RecipeLoader(yaml.SafeLoader):
    """``SafeLoader`` that checks the composed document's size (aliases expanded) and depth
    before any Python object is built."""

    def compose_document(self):
        node = super().compose_document()
        _check_nodes(node)
        return node


def _check_nodes(root: yaml.Node) -> None:
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int) -> int:
        if depth > MAX_YAML_DEPTH:
            msg = f"nested deeper than {MAX_YAML_DEPTH} levels"
            raise RecipeError(msg)
        if id(node) in sizes:  # an alias: the anchored node again, as often as it is used
            return sizes[id(node)]
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child, depth + 1)
                if total > MAX_YAML_NODES:
                    break
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                total += size(key, depth + 1) + size(value, depth + 1)
                if total > MAX_YAML_NODES:
                    break
        if total > MAX_YAML_NODES:
            msg = f"expands to more than {MAX_YAML_NODES} values (aliases included)"
            raise RecipeError(msg)
        sizes[id(node)] = total
        return total

    size(root, 0)


def read_yaml(path: Path) -> Any:
    """The YAML document of ``path``, read safely with size, expansion and depth limits."""
    try:
        size = path.stat().st_size
        if size > MAX_RECIPE_BYTES:
            msg = f"{path}: {size} bytes; a recipe is at most {MAX_RECIPE_BYTES} bytes"
            raise RecipeError(msg)
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{path}: cannot be read ({type(exc).__name__})"
        raise RecipeError(msg) from exc
    try:
        return yaml.load(text, Loader=_RecipeLoader)
    except RecipeError as exc:
        msg = f"{path}: {exc}"
        raise RecipeError(msg) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        msg = f"{path}: not valid YAML{where} ({short(problem, 80)})"
        raise RecipeError(msg) from None
    except RecursionError:
        msg = f"{path}: nested too deeply"
        raise RecipeError(msg) from None


# -- typed values -------------------------------------------------------------------------------


def fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


@functools.cache
def _adapter(hint: Any):
    from pydantic import TypeAdapter

    return TypeAdapter(hint)


def as_type(value: Any, hint: Any, where: str) -> Any:
    """``value`` as type ``hint`` (pydantic's lax rules: ``"1e-5"`` is a float, ``"fast"`` is
    not), else a one-line error."""
    from pydantic import ValidationError

    try:
        return _adapter(hint).validate_python(value)
    except ValidationError as exc:
        first = exc.errors()[0]["msg"] if exc.errors() else "invalid"
        msg = f"{where}: {first.lower()}, found {short(value)}"
        raise RecipeError(msg) from None


def in_range(value: Any, low: float, inclusive: bool, high: float | None, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    below = value < low if inclusive else value <= low
    if below or (high is not None and value > high):
        bound = f">= {low}" if inclusive else f"> {low}"
        if high is not None:
            bound += f" and <= {high}"
        msg = f"{where}: must be {bound}, found {short(value)}"
        raise RecipeError(msg)


def build(cls: type, data: Any, where: str) -> Any:
    """``cls(**data)`` with each value checked against the field's type."""
    import typing

    if not isinstance(data, dict):
        msg = f"{where}: expected a mapping, found {type(data).__name__}"
        raise RecipeError(msg)
    unknown = set(data) - fields(cls)
    if unknown:
        msg = (
            f"{where}: unknown key(s) {short(sorted(map(str, unknown)))}; valid: "
            f"{', '.join(sorted(fields(cls)))}"
        )
        raise RecipeError(msg)
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        typed = as_type(value, hints[key], f"{where}.{key}")
        values[key] = tuple(typed) if isinstance(typed, list) else typed
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:  # the class's own checks
        raise RecipeError(f"{where}: {exc}") from exc
