"""The tool catalog: every entry is valid, importable, and its examples pass its own schemas."""

import json
from datetime import UTC, datetime
from importlib import resources

import pytest

from engine import ToolContext, ToolRegistry, call_tool
from engine.registry import load_catalog_entries
from store.errors import ConfigError

ENTRIES = json.loads(resources.files("catalogs").joinpath("tools.json").read_text())["tools"]


def test_every_catalog_entry_loads():
    registry = ToolRegistry.load()
    assert set(registry) == {e["address"] for e in ENTRIES}
    assert {"echo.message", "transform.jmespath", "http.request"} <= set(registry)


@pytest.mark.parametrize(
    "example",
    [(e["address"], ex) for e in ENTRIES for ex in e.get("examples", [])],
    ids=lambda p: p[0],
)
def test_catalog_examples_run_and_match_their_schemas(example):
    address, ex = example
    tool = ToolRegistry.load()[address]
    out = call_tool(tool, ex["input"], ToolContext.standalone(datetime.now(UTC), tool.timeout_s))
    if "output" in ex:
        assert out == ex["output"]


def test_a_malformed_catalog_is_refused_with_the_entry_named():
    bad = {"tools": [{**ENTRIES[0], "timeout_s": -1}]}
    with pytest.raises(ConfigError, match="tools/0/timeout_s"):
        load_catalog_entries(json.dumps(bad), "bad.json")
    with pytest.raises(ConfigError, match="not a valid JSON Schema"):
        load_catalog_entries(
            json.dumps({"tools": [{**ENTRIES[0], "input_schema": {"type": "nope"}}]}), "bad.json"
        )


def test_an_extra_catalog_adds_http_tools(tmp_path):
    extra = tmp_path / "extra.json"
    extra.write_text(
        json.dumps(
            {
                "tools": [
                    {
                        "address": "mes.notify",
                        "description": "Tell the MES.",
                        "input_schema": {"type": "object"},
                        "output_schema": {"type": "object"},
                        "timeout_s": 10,
                        "runs": {"kind": "http", "url": "http://127.0.0.1:9/notify"},
                    }
                ]
            }
        )
    )
    registry = ToolRegistry.load([extra])
    assert registry["mes.notify"].describe()["runs"] == "http"
    with pytest.raises(ConfigError, match="defined in two catalogs"):
        ToolRegistry.load([extra, extra])


def _python_entry(address, **runs):
    return {
        "address": address,
        "description": "A tool written for this test.",
        "input_schema": {"type": "object"},
        "output_schema": {"type": "object"},
        "timeout_s": 10,
        "runs": {"kind": "python", "callable": "engine.tools.basic:echo", **runs},
    }


@pytest.mark.parametrize(
    ("runs", "problem"),
    [
        ({"async_callable": "engine.tools.http:request"}, "is not an async function"),
        ({"async_callable": "engine.tools.http:nowhere"}, "cannot import"),
        ({"async_callable": "engine.tools.http:request_async", "inline": True}, "an inline tool has no"),
    ],
)
def test_an_async_callable_must_be_an_async_function_of_a_tool_that_waits(tmp_path, runs, problem):
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"tools": [_python_entry("test.waits", **runs)]}))
    with pytest.raises(ConfigError, match=problem):
        ToolRegistry.load([extra])


def test_the_http_request_tool_can_be_awaited():
    tool = ToolRegistry.load()["http.request"]
    assert tool.afunc is not None and not tool.inline
