"""`${...}` templates: JMESPath over the run context `{params, steps, run, task, event, now}`.

A string that is exactly one template yields the value with its JSON type; templates embedded in
longer text are formatted into it (strings as-is, null as empty, other values as compact JSON).
`$${` writes a literal `${`. Templates are compiled once per pipeline version, then rendered per run.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jmespath
from jmespath import functions
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult
from jmespath.visitor import Options, TreeInterpreter

from engine.values import ValueProblem, measure

__all__ = [
    "CONTEXT_KEYS",
    "JMESPATH_OPTIONS",
    "MAX_EVALUATION_WORK",
    "MAX_TEXT_BYTES",
    "Reference",
    "Renderer",
    "TemplateError",
    "compile_expression",
    "compile_value",
    "evaluate",
    "format_value",
    "truthy",
]

CONTEXT_KEYS = frozenset({"params", "steps", "run", "task", "event", "now"})

Renderer = Callable[[dict[str, Any]], Any]

# The longest text a template may build (text around `${...}`, to_string(), join()). Values that
# share parts are small in memory and can be huge as text; building such a text fails the step
# instead of exhausting the worker's memory.
MAX_TEXT_BYTES = 64 * 1024 * 1024


class _BoundedFunctions(functions.Functions):
    """JMESPath's functions, with the two that build text refusing to build more than MAX_TEXT_BYTES."""

    @functions.signature({"types": []})
    def _func_to_string(self, arg: Any) -> str:
        if isinstance(arg, str):
            return arg
        _check_text_size(arg)
        return json.dumps(arg, separators=(",", ":"), default=str)

    @functions.signature({"types": ["string"]}, {"types": ["array-string"]})
    def _func_join(self, separator: str, array: list[str]) -> str:
        if len(separator) * len(array) + sum(len(item) for item in array) > MAX_TEXT_BYTES:
            raise ValueError(f"join() would build a text longer than {MAX_TEXT_BYTES} bytes")
        return separator.join(array)


# Every JMESPath evaluation in Ordo (templates, `if`, transform.jmespath) uses these options.
JMESPATH_OPTIONS = Options(custom_functions=_BoundedFunctions())

# The most work one evaluation may do: expression nodes visited plus elements of the lists it
# flattens. A short expression can double a list at every step (`[@, @][]` piped 30 times builds
# 2^30 elements: minutes and gigabytes on the thread that evaluates it, for an inline step the
# worker's own, before any step timeout is looked at). Ten million is a few seconds of work and far
# more than an expression over step outputs (ORDO_STEP_OUTPUT_MAX_BYTES each) needs.
MAX_EVALUATION_WORK = 10_000_000


class _BoundedInterpreter(TreeInterpreter):
    """JMESPath's interpreter, counting down the work left (`left`) on each node it visits and each
    element it flattens. One per thread: an evaluation never yields, so it has its thread's alone."""

    left = 0

    def visit(self, node: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        self.left -= 1
        if self.left < 0:
            _refuse()
        # As Visitor.visit (one call less than delegating to it: this runs for every node)
        method = self._method_cache.get(node["type"])
        if method is None:
            method = self._method_cache[node["type"]] = getattr(
                self, f"visit_{node['type']}", self.default_visit
            )
        return method(node, *args, **kwargs)

    def visit_flatten(self, node: dict[str, Any], value: Any) -> Any:
        # As TreeInterpreter.visit_flatten, with the merged list's size charged before it is built.
        base = self.visit(node["children"][0], value)
        if not isinstance(base, list):
            return None
        self.left -= sum(len(element) if isinstance(element, list) else 1 for element in base)
        if self.left < 0:
            _refuse()
        merged: list[Any] = []
        for element in base:
            if isinstance(element, list):
                merged.extend(element)
            else:
                merged.append(element)
        return merged


def _refuse() -> None:
    raise ValueError(
        f"the expression does more than {MAX_EVALUATION_WORK:,} steps of work (a list doubled again "
        "and again?): write it over the values it needs"
    )


class _Interpreters(threading.local):
    # Building an interpreter per search (as ParsedResult.search does) costs more than evaluating a
    # short path: each thread keeps one.
    def __init__(self) -> None:
        self.interpreter = _BoundedInterpreter(JMESPATH_OPTIONS)


_INTERPRETERS = _Interpreters()


def evaluate(expression: ParsedResult, data: Any) -> Any:
    """The value of a compiled expression over `data`, within MAX_EVALUATION_WORK."""
    return _evaluate_tree(expression.parsed, data)


def _evaluate_tree(tree: dict[str, Any], data: Any) -> Any:
    interpreter = _INTERPRETERS.interpreter
    interpreter.left = MAX_EVALUATION_WORK
    return interpreter.visit(tree, data)


class TemplateError(ValueError):
    """A template is malformed; `path` says where inside the value it sits."""

    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class Reference:
    """A name a template reads from the context root, e.g. ("steps", "plan") for `steps.plan.summary`."""

    root: str
    key: str | None
    expression: str
    path: tuple[str | int, ...]


class _Template:
    """A string with `${...}` parts: literal text and compiled expressions, alternating."""

    __slots__ = ("parts", "single")

    def __init__(self, parts: list[str | ParsedResult]) -> None:
        self.parts = parts
        self.single = len(parts) == 1 and isinstance(parts[0], ParsedResult)


def compile_expression(
    expression: str, path: tuple[str | int, ...] = ()
) -> tuple[ParsedResult, list[Reference]]:
    """Compile one JMESPath expression and list the context names it reads."""
    try:
        parsed = jmespath.compile(expression)
    except JMESPathError as e:
        detail = str(e).strip().splitlines()[0]
        raise TemplateError(f"invalid expression {expression!r}: {detail}", path) from None
    found: list[tuple[str, str | None]] = []
    _root_refs(parsed.parsed, found)
    return parsed, [Reference(root, key, expression, path) for root, key in found]


def compile_value(value: Any, path: tuple[str | int, ...] = ()) -> tuple[Renderer, list[Reference]]:
    """Compile a JSON value whose strings may hold templates; return a renderer and the references."""
    refs: list[Reference] = []
    renderer, _ = _compile(value, path, refs)
    return renderer, refs


def _compile(value: Any, path: tuple[str | int, ...], refs: list[Reference]) -> tuple[Renderer, bool]:
    """A renderer for `value` and whether it is constant (then the value itself is returned, not rebuilt)."""
    if isinstance(value, str):
        template = _parse_template(value, path, refs)
        if template is None:
            return (lambda ctx, v=value: v), True
        if template.single:
            expr = template.parts[0]
            return (lambda ctx, e=expr.parsed: _evaluate_tree(e, ctx)), False  # type: ignore[union-attr]
        parts = template.parts
        return (
            lambda ctx, p=parts: "".join(
                part if isinstance(part, str) else format_value(_evaluate_tree(part.parsed, ctx))
                for part in p
            )
        ), False
    if isinstance(value, dict):
        items = [(k, *_compile(v, (*path, k), refs)) for k, v in value.items()]
        if all(const for _, _, const in items):
            return (lambda ctx, v=value: v), True
        pairs = [(k, r) for k, r, _ in items]
        return (lambda ctx, c=pairs: {k: r(ctx) for k, r in c}), False
    if isinstance(value, list):
        elements = [_compile(v, (*path, i), refs) for i, v in enumerate(value)]
        if all(const for _, const in elements):
            return (lambda ctx, v=value: v), True
        renderers = [r for r, _ in elements]
        return (lambda ctx, c=renderers: [r(ctx) for r in c]), False
    return (lambda ctx, v=value: v), True


def _parse_template(text: str, path: tuple[str | int, ...], refs: list[Reference]) -> _Template | None:
    """Split text into literal parts and compiled `${...}` expressions; None when it holds none."""
    if "${" not in text:
        return None
    parts: list[str | ParsedResult] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("$${", i):
            literal.append("${")
            i += 3
            continue
        if text.startswith("${", i):
            end = _closing_brace(text, i + 2)
            if end is None:
                raise TemplateError(f"unclosed template in {text!r}: '${{' without a matching '}}'", path)
            expression = text[i + 2 : end].strip()
            if not expression:
                raise TemplateError(f"empty template '${{}}' in {text!r}", path)
            parsed, found = compile_expression(expression, path)
            refs.extend(found)
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(parsed)
            i = end + 1
            continue
        literal.append(text[i])
        i += 1
    if literal:
        parts.append("".join(literal))
    return _Template(parts)


def _closing_brace(text: str, start: int) -> int | None:
    """Index of the `}` closing a template body, skipping braces inside JMESPath literals and strings."""
    depth = 0
    quote: str | None = None
    i = start
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "'\"`":
            quote = c
        elif c == "{":
            depth += 1
        elif c == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return None


def format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return _json_text(value)


def _json_text(value: Any) -> str:
    _check_text_size(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _check_text_size(value: Any) -> None:
    try:
        measure(value, max_bytes=MAX_TEXT_BYTES)
    except ValueProblem as e:
        raise ValueError(f"the value written as text {e}") from None


def truthy(value: Any) -> bool:
    """JMESPath truthiness: false, null and empty strings, lists and objects are false; 0 is true."""
    if value is None or value is False:
        return False
    if isinstance(value, str | list | dict):
        return len(value) > 0
    return True


def _leading_field(node: dict[str, Any]) -> str | None:
    kind = node["type"]
    if kind == "field":
        return node["value"]
    if kind in ("index_expression", "projection", "value_projection", "filter_projection", "flatten"):
        return _leading_field(node["children"][0])
    return None


def _root_refs(node: dict[str, Any], out: list[tuple[str, str | None]]) -> None:
    """Collect (root, key) for every field chain the expression evaluates against the context root."""
    kind = node["type"]
    children = node.get("children", [])
    if kind == "field":
        out.append((node["value"], None))
    elif kind == "subexpression":
        head = children[0]
        if head["type"] == "field" and len(children) > 1:
            out.append((head["value"], _leading_field(children[1])))
        else:
            _root_refs(head, out)
    elif kind in (
        "index_expression",
        "projection",
        "value_projection",
        "filter_projection",
        "flatten",
        "pipe",
    ):
        _root_refs(children[0], out)  # the right-hand side reads the left-hand result, not the root
    elif kind in (
        "or_expression",
        "and_expression",
        "not_expression",
        "comparator",
        "multi_select_list",
        "multi_select_dict",
        "key_val_pair",
        "function_expression",
    ):
        for child in children:
            _root_refs(child, out)
    # literal, current (@), identity, index, slice, expref (evaluated per element): no root names
