"""The tool registry, built once from the catalogs (`catalogs/tools.json` plus any extra files).

Each catalog entry describes a tool: its address, what it does, the JSON Schemas of its input and
output, its default timeout, the scopes a task owner needs to use it, and how it runs: an in-process
Python callable, or an HTTP endpoint that receives the input as JSON and answers with the output.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jmespath
import jsonschema_rs
from jmespath.exceptions import JMESPathError
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError

from engine.context import ToolContext
from store.errors import ConfigError, UnknownTool

__all__ = ["CATALOG_SCHEMA", "Tool", "ToolRegistry", "format_checker", "load_catalog_entries"]

ToolFunc = Callable[[dict[str, Any], ToolContext], dict[str, Any]]
AsyncToolFunc = Callable[[dict[str, Any], ToolContext], Awaitable[dict[str, Any]]]

CATALOG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["tools"],
    "additionalProperties": False,
    "properties": {
        "$comment": {"type": "string"},
        "tools": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["address", "description", "input_schema", "output_schema", "timeout_s", "runs"],
                "additionalProperties": False,
                "properties": {
                    "address": {"type": "string", "pattern": "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)+$"},
                    "description": {"type": "string", "minLength": 1},
                    "input_schema": {"type": "object"},
                    "output_schema": {"type": "object"},
                    "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
                    "scopes": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                    "runs": {
                        "oneOf": [
                            {
                                "type": "object",
                                "required": ["kind", "callable"],
                                "additionalProperties": False,
                                "properties": {
                                    "kind": {"const": "python"},
                                    "callable": {"type": "string", "pattern": "^[\\w.]+:[\\w]+$"},
                                    "async_callable": {"type": "string", "pattern": "^[\\w.]+:[\\w]+$"},
                                    "inline": {"type": "boolean"},
                                },
                            },
                            {
                                "type": "object",
                                "required": ["kind", "url"],
                                "additionalProperties": False,
                                "properties": {
                                    "kind": {"const": "http"},
                                    "url": {"type": "string", "pattern": "^https?://"},
                                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                                },
                            },
                        ]
                    },
                    "examples": {"type": "array"},
                },
            },
        },
    },
}

format_checker = FormatChecker()


@format_checker.checks("jmespath", raises=(JMESPathError,))
def _is_jmespath(value: object) -> bool:
    if isinstance(value, str):
        jmespath.compile(value)
    return True


def _jmespath_valid(value: str) -> bool:
    try:
        jmespath.compile(value)
    except JMESPathError:
        return False
    return True


def fast_validator(schema: dict[str, Any], *, formats: bool) -> Any:
    """A compiled validator for the hot path: checking every run's input and output.

    jsonschema-rs answers valid/invalid about a hundred times faster than the pure-Python jsonschema,
    which stays the reference for error messages and for the static checks made when a task is added.
    """
    return jsonschema_rs.Draft202012Validator(
        schema, validate_formats=formats, formats={"jmespath": _jmespath_valid} if formats else None
    )


@dataclass(frozen=True)
class Tool:
    address: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    timeout_s: float
    scopes: tuple[str, ...]
    runs: dict[str, Any]
    func: ToolFunc = field(repr=False)
    # Inline tools finish in microseconds: they run on the run's own thread and their timeout is
    # checked when they return. Others run on a step thread that is abandoned at the deadline.
    inline: bool = False
    # The same tool as a coroutine function, for tools that wait on I/O: a worker runs pipelines made
    # only of such tools (and inline ones) on an event loop, hundreds of runs on one thread.
    afunc: AsyncToolFunc | None = field(repr=False, default=None)
    input_validator: Draft202012Validator = field(repr=False, default=None)  # type: ignore[assignment]
    output_validator: Draft202012Validator = field(repr=False, default=None)  # type: ignore[assignment]
    fast_input: Any = field(repr=False, default=None)
    fast_output: Any = field(repr=False, default=None)

    def __post_init__(self) -> None:
        # Tools built in code (tests, embedders) may pass only the schemas; derive what is missing.
        if self.input_validator is None:
            object.__setattr__(
                self,
                "input_validator",
                Draft202012Validator(self.input_schema, format_checker=format_checker),
            )
        if self.output_validator is None:
            object.__setattr__(self, "output_validator", Draft202012Validator(self.output_schema))
        if self.fast_input is None:
            object.__setattr__(self, "fast_input", fast_validator(self.input_schema, formats=True))
        if self.fast_output is None:
            object.__setattr__(self, "fast_output", fast_validator(self.output_schema, formats=False))

    def describe(self) -> dict[str, Any]:
        """The public description served by `ordo tool list` and the API."""
        return {
            "address": self.address,
            "description": self.description,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
            "timeout_s": self.timeout_s,
            "scopes": list(self.scopes),
            "runs": self.runs["kind"],
        }


class ToolRegistry(Mapping[str, Tool]):
    def __init__(self, tools: Iterable[Tool]) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            if tool.address in self._tools:
                raise ConfigError(f"tool {tool.address!r} is defined in two catalogs")
            self._tools[tool.address] = tool

    def __getitem__(self, address: str) -> Tool:
        return self._tools[address]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._tools))

    def __len__(self) -> int:
        return len(self._tools)

    def require(self, address: str) -> Tool:
        try:
            return self._tools[address]
        except KeyError:
            raise UnknownTool(
                f"unknown tool {address!r}; known tools: {', '.join(sorted(self._tools))}",
                details={"tool": address},
            ) from None

    @classmethod
    def load(cls, extra_catalogs: Iterable[Path] = ()) -> ToolRegistry:
        """The built-in catalog plus extra catalog files (ORDO_TOOL_CATALOGS)."""
        entries = load_catalog_entries(
            resources.files("catalogs").joinpath("tools.json").read_text(encoding="utf-8"),
            "catalogs/tools.json",
        )
        for path in extra_catalogs:
            try:
                source = Path(path).read_text(encoding="utf-8")
            except OSError as e:
                raise ConfigError(f"cannot read tool catalog {path}: {e.strerror}") from None
            entries.extend(load_catalog_entries(source, str(path)))
        return cls(_build(entry) for entry in entries)


def load_catalog_entries(source: str, origin: str) -> list[dict[str, Any]]:
    try:
        document = json.loads(source)
    except ValueError as e:
        raise ConfigError(f"{origin} is not valid JSON: {e}") from None
    errors = sorted(Draft202012Validator(CATALOG_SCHEMA).iter_errors(document), key=lambda e: list(e.path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path)
        raise ConfigError(f"{origin}: invalid catalog at {where or 'top level'}: {errors[0].message}")
    entries: list[dict[str, Any]] = document["tools"]
    for entry in entries:
        for key in ("input_schema", "output_schema"):
            try:
                Draft202012Validator.check_schema(entry[key])
            except SchemaError as e:
                raise ConfigError(
                    f"{origin}: {entry['address']}.{key} is not a valid JSON Schema: {e.message}"
                ) from None
    return entries


def _build(entry: dict[str, Any]) -> Tool:
    runs = entry["runs"]
    if runs["kind"] == "python":
        func = _import_callable(runs["callable"], entry["address"])
        afunc = _import_async_callable(runs, entry["address"])
        inline = bool(runs.get("inline", False))
    else:
        from engine.tools.remote import async_http_tool, http_tool

        func = http_tool(runs["url"], runs.get("headers", {}))
        afunc = async_http_tool(runs["url"], runs.get("headers", {}))
        inline = False
    return Tool(
        address=entry["address"],
        description=entry["description"],
        input_schema=entry["input_schema"],
        output_schema=entry["output_schema"],
        timeout_s=float(entry["timeout_s"]),
        scopes=tuple(entry.get("scopes", ())),
        runs=runs,
        func=func,
        afunc=afunc,
        inline=inline,
    )


def _import_callable(target: str, address: str) -> ToolFunc:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        func = getattr(module, attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"tool {address!r}: cannot import {target}: {e}") from None
    if not callable(func):
        raise ConfigError(f"tool {address!r}: {target} is not callable")
    return func


def _import_async_callable(runs: dict[str, Any], address: str) -> AsyncToolFunc | None:
    target = runs.get("async_callable")
    if target is None:
        return None
    if runs.get("inline"):
        raise ConfigError(f"tool {address!r}: an inline tool has no async_callable (it never waits)")
    func = _import_callable(target, address)
    if not inspect.iscoroutinefunction(func):
        raise ConfigError(f"tool {address!r}: async_callable {target} is not an async function")
    return func  # type: ignore[return-value]
