"""The pipeline document: its JSON Schema, the checks made when a task is added, and its compiled form.

A task's payload is `{"params": {...}, "pipeline": [step, ...]}`; a step is
`{"id", "uses", "with", "if", "save_as", "timeout_s"}`. Compilation refuses, with the path of the
offending field: a malformed document, duplicate step ids, an unknown tool, a tool the owner may not
use, a template that reads a step which does not run earlier, and `with` values that already break
the tool's input schema (values still to be rendered are checked at run time).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from jmespath.parser import ParsedResult
from jsonschema import Draft202012Validator

from engine.registry import Tool, ToolRegistry, fast_validator
from engine.templates import (
    CONTEXT_KEYS,
    Reference,
    Renderer,
    TemplateError,
    compile_expression,
    compile_value,
)
from store.errors import Forbidden, InvalidPipeline, UnknownTool

__all__ = ["PIPELINE_SCHEMA", "Pipeline", "Step", "compile_pipeline", "format_path"]

_NAME = "^[A-Za-z_][A-Za-z0-9_]{0,63}$"

PIPELINE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Ordo task payload",
    "type": "object",
    "required": ["pipeline"],
    "additionalProperties": False,
    "properties": {
        "params": {"type": "object"},
        "pipeline": {
            "type": "array",
            "minItems": 1,
            "maxItems": 100,
            "items": {
                "type": "object",
                "required": ["id", "uses"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string", "pattern": _NAME},
                    "uses": {"type": "string", "minLength": 1},
                    "with": {"type": ["object", "string"]},
                    "if": {"type": "string", "minLength": 1},
                    "save_as": {"type": "string", "pattern": _NAME},
                    "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
                    "description": {"type": "string"},
                },
            },
        },
    },
}
_PIPELINE_VALIDATOR = Draft202012Validator(PIPELINE_SCHEMA)
# Says valid/invalid about a hundred times faster (a tenth of checking a one-step task); the reference
# validator above is asked only to say what is wrong.
_FAST_PIPELINE_VALIDATOR = fast_validator(PIPELINE_SCHEMA, formats=False)


@dataclass(frozen=True)
class Step:
    id: str
    uses: str
    tool: Tool
    render_input: Renderer
    condition: ParsedResult | None
    save_as: str | None
    timeout_s: float


@dataclass(frozen=True)
class Pipeline:
    steps: tuple[Step, ...]
    params: Mapping[str, Any]
    # Every step is an inline tool: the whole run finishes without blocking.
    inline: bool = False


class _Unknown:
    """Stands for a value a template will produce at run time, when checking `with` statically."""

    __slots__ = ()


_UNKNOWN = _Unknown()


def format_path(path: tuple[str | int, ...] | list[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def compile_pipeline(
    payload: Any,
    registry: ToolRegistry,
    *,
    scopes: Collection[str] | None = None,
    where: tuple[str | int, ...] = ("payload",),
) -> Pipeline:
    """Check a task payload and compile it; raise InvalidPipeline/UnknownTool/Forbidden with the field path.

    `scopes`: the owner's scopes; None means the owner may use every tool (admin, local CLI).
    """
    errors = (
        []
        if _valid_shape(payload)
        else sorted(
            _PIPELINE_VALIDATOR.iter_errors(payload),
            key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))),
        )
    )
    if errors:
        error = errors[0]
        path = (*where, *error.absolute_path)
        raise InvalidPipeline(
            f"{format_path(path)}: {_schema_message(error)}", details={"path": format_path(path)}
        )
    steps: list[Step] = []
    available: set[str] = set()
    for index, raw in enumerate(payload["pipeline"]):
        step_path = (*where, "pipeline", index)
        step = _compile_step(raw, step_path, registry, available, scopes)
        if step.id in available:
            raise InvalidPipeline(
                f"{format_path((*step_path, 'id'))}: duplicate step id {step.id!r}; step ids must be unique",
                details={"path": format_path((*step_path, "id"))},
            )
        available.add(step.id)
        if step.save_as and step.save_as != step.id:
            if step.save_as in available:
                raise InvalidPipeline(
                    f"{format_path((*step_path, 'save_as'))}: {step.save_as!r} is already "
                    "a step id or save_as name",
                    details={"path": format_path((*step_path, "save_as"))},
                )
            available.add(step.save_as)
        steps.append(step)
    return Pipeline(
        steps=tuple(steps), params=payload.get("params", {}), inline=all(step.tool.inline for step in steps)
    )


def _compile_step(
    raw: dict[str, Any],
    path: tuple[str | int, ...],
    registry: ToolRegistry,
    available: set[str],
    scopes: Collection[str] | None,
) -> Step:
    try:
        tool = registry.require(raw["uses"])
    except UnknownTool as e:
        where = format_path((*path, "uses"))
        raise UnknownTool(f"{where}: {e.message}", details={**e.details, "path": where}) from None
    if scopes is not None:
        missing = sorted(set(tool.scopes) - set(scopes))
        if missing:
            raise Forbidden(
                f"{format_path((*path, 'uses'))}: tool {tool.address!r} needs scope(s) {', '.join(missing)}, "
                "which the task's owner does not hold",
                details={"path": format_path((*path, "uses")), "missing_scopes": missing},
                code="TOOL_SCOPE_MISSING",
            )
    inputs = raw.get("with", {})
    try:
        render_input, refs = compile_value(inputs, (*path, "with"))
        condition = None
        if "if" in raw:
            text = raw["if"].strip()
            if text.startswith("${") and text.endswith("}"):
                text = text[2:-1]
            condition, cond_refs = compile_expression(text, (*path, "if"))
            refs = refs + cond_refs
    except TemplateError as e:
        raise InvalidPipeline(f"{format_path(e.path)}: {e}", details={"path": format_path(e.path)}) from None
    for ref in refs:
        _check_reference(ref, raw["id"], available)
    _check_static_input(tool, inputs, (*path, "with"))
    return Step(
        id=raw["id"],
        uses=raw["uses"],
        tool=tool,
        render_input=render_input,
        condition=condition,
        save_as=raw.get("save_as"),
        timeout_s=float(raw.get("timeout_s", tool.timeout_s)),
    )


def _valid_shape(payload: Any) -> bool:
    try:
        return bool(_FAST_PIPELINE_VALIDATOR.is_valid(payload))
    except ValueError:  # a value JSON has no type for (a YAML date): the reference validator says which
        return False


def _check_reference(ref: Reference, step_id: str, available: set[str]) -> None:
    where = format_path(ref.path)
    if ref.root not in CONTEXT_KEYS:
        raise InvalidPipeline(
            f"{where}: template {ref.expression!r} reads {ref.root!r}; templates read "
            + ", ".join(sorted(CONTEXT_KEYS)),
            details={"path": where},
        )
    if ref.root == "steps" and ref.key is not None and ref.key not in available:
        raise InvalidPipeline(
            f"{where}: template {ref.expression!r} reads step {ref.key!r}, "
            f"which does not run before step {step_id!r}",
            details={"path": where, "step": ref.key},
        )


def _check_static_input(tool: Tool, inputs: Any, path: tuple[str | int, ...]) -> None:
    """Validate what is already known of the input; values a template will produce are skipped."""
    if isinstance(inputs, str):
        return  # the whole input is one template
    probe = _probe(inputs)
    for error in tool.input_validator.iter_errors(probe):
        if _contains_unknown(error.instance):
            continue
        where = format_path((*path, *error.absolute_path))
        raise InvalidPipeline(
            f"{where}: input for {tool.address} is invalid: {_schema_message(error)}",
            details={"path": where, "tool": tool.address},
        )


def _probe(value: Any) -> Any:
    if isinstance(value, str):
        return _UNKNOWN if "${" in value.replace("$${", "") else value
    if isinstance(value, dict):
        return {k: _probe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_probe(v) for v in value]
    return value


def _contains_unknown(value: Any) -> bool:
    if value is _UNKNOWN:
        return True
    if isinstance(value, dict):
        return any(_contains_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_unknown(v) for v in value)
    return False


_MAX_STEPS = PIPELINE_SCHEMA["properties"]["pipeline"]["maxItems"]


def _schema_message(error: Any) -> str:
    """The schema error in words, without echoing the (possibly huge) offending value."""
    if error.validator == "maxItems" and list(error.absolute_path) == ["pipeline"]:
        return f"a pipeline has at most {_MAX_STEPS} steps; this one has {len(error.instance)}"
    if error.validator == "maxItems" and isinstance(error.instance, list):
        return f"has {len(error.instance)} items; at most {error.validator_value} are allowed"
    if error.validator == "maxLength" and isinstance(error.instance, str):
        return f"is {len(error.instance)} characters long; at most {error.validator_value} are allowed"
    message: str = error.message
    if len(message) > 300:
        message = message[:297] + "..."
    return message
