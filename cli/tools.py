"""`ordo tool list|show|run` (the catalog, and one tool tried on its own) and `ordo preview` (the next
occurrences of a draft schedule). Neither needs a database."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from cli import documents
from cli.output import JsonFlag, emit_json, table
from cli.runtime import fail
from cli.session import session
from engine import ToolContext, call_tool
from scheduler.expand import preview_within_budget, zone
from scheduler.expand.walltime import YEARS
from store.domain import PREVIEW_MAX_COUNT

__all__ = ["preview_command", "tool_app"]

tool_app = typer.Typer(help="List the tool catalog and try a tool.", no_args_is_help=True)


@tool_app.command("list")
def tool_list(as_json: JsonFlag = False) -> None:
    """The tool catalog: addresses, what each does, the scopes it needs."""
    with session() as s:
        registry = s.registry
        if as_json:
            emit_json([registry[a].describe() for a in registry])
            return
        table(
            [
                (
                    a,
                    registry[a].runs["kind"],
                    f"{registry[a].timeout_s:g}s",
                    ",".join(registry[a].scopes) or "-",
                    registry[a].description,
                )
                for a in registry
            ],
            ["address", "runs", "timeout", "scopes", "description"],
        )


@tool_app.command("show")
def tool_show(address: Annotated[str, typer.Argument(metavar="ADDRESS", help="e.g. solver.solve.")]) -> None:
    """One tool with its input and output JSON Schemas (JSON)."""
    with session() as s:
        emit_json(s.registry.require(address).describe())


@tool_app.command("run")
def tool_run(
    address: Annotated[str, typer.Argument(metavar="ADDRESS", help="e.g. transform.jmespath.")],
    input_file: Annotated[
        str, typer.Option("--input", metavar="FILE", help="The tool's input, YAML or JSON; '-' reads stdin.")
    ],
) -> None:
    """Run one tool in-process with the same validation as a pipeline step; print its JSON output."""
    with session() as s:
        tool = s.registry.require(address)
        arguments = documents.read(input_file, max_bytes=s.settings.api_max_body_bytes)
        ctx = ToolContext.standalone(s.now, tool.timeout_s, s.limits)
        emit_json(call_tool(tool, arguments, ctx))


def preview_command(
    rrule: Annotated[
        str | None, typer.Option(metavar="RULE", help="An RRULE value, or a whole RFC 5545 block.")
    ] = None,
    cron: Annotated[str | None, typer.Option(metavar="LINE", help="A cron line (5 fields).")] = None,
    tz: Annotated[str, typer.Option("--tz", metavar="ZONE", help="IANA time zone.")] = "UTC",
    dtstart: Annotated[
        str | None, typer.Option(metavar="TIME", help="ISO 8601 DTSTART (RRULE) / lower bound.")
    ] = None,
    after: Annotated[
        str | None,
        typer.Option(metavar="TIME", help="List occurrences at or after this ISO 8601 time [default: now]."),
    ] = None,
    count: Annotated[
        int, typer.Option(min=1, max=PREVIEW_MAX_COUNT, metavar="N", help="How many occurrences.")
    ] = 10,
    as_json: JsonFlag = False,
) -> None:
    """Print the next occurrences of a schedule, one per line, in its zone with the UTC offset (so DST
    changes show). Times without an offset are read in --tz. A rule too costly to expand within about
    a second prints those found by then and says why on stderr (exit 2, SCHEDULE_TOO_COSTLY, if none)."""
    with session() as s:
        if (rrule is None) == (cron is None):
            fail("give exactly one of --rrule or --cron")
        kind, expr = ("rrule", rrule) if rrule is not None else ("cron", cron)
        result = preview_within_budget(
            kind,
            expr or "",
            tz,
            count=count,
            now=s.now,
            dtstart=_parse_time(dtstart, "--dtstart", tz),
            after=_parse_time(after, "--after", tz),
        )
        if as_json:
            emit_json(result.as_json())
            return
        for o in result.occurrences:
            typer.echo(o.isoformat())
        if result.cut_short is not None:
            typer.echo(f"incomplete ({result.cut_short.code}): {result.cut_short.message}", err=True)


def _parse_time(value: str | None, option: str, tz: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} must be an ISO 8601 time such as 2026-03-29T08:00:00+03:00, not {value!r}")
    if not YEARS[0] <= parsed.year <= YEARS[1]:
        fail(f"{option} must be within the years {YEARS[0]}..{YEARS[1]}, not {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone(tz))
    return parsed
