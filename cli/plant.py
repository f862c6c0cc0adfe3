"""`ordo resources ...` and `ordo availability ...`: the plant and its availability from the shell.

The CLI acts for the `local` agent (the operator at the host), as `ordo task add` does: its plant is
the one these commands import into, generate and show. Bad input exits 2 with every problem on
stderr, each naming its row (or path) and field; nothing is stored.

Registered by cli.main: `app.add_typer(resources_app, name="resources")` and the same for
`availability_app`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from cli import documents, runtime
from cli.output import emit_json, table
from cli.runtime import fail, guarded, load_settings, open_database
from engine.tools import plant
from engine.tools.availability import LEVELS, checked_preview, range_problem
from engine.tools.holiday_calendars import OBSERVED_SETTINGS
from engine.tools.shift_patterns import BUILT_IN_NAMES, built_in, parse_pattern
from store import plant as store_plant
from store import plant_availability as stored
from store.errors import InvalidPlant, NotFound
from store.problems import Problems
from store.tasks import LOCAL_AGENT_ID

__all__ = ["availability_app", "resources_app"]

resources_app = typer.Typer(
    help="The plant: import resources (CSV or a JSON/YAML plant document), list them, assign patterns.",
    no_args_is_help=True,
)
availability_app = typer.Typer(
    help="Equipment availability: preview a pattern, generate, show, and what changed.", no_args_is_help=True
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON only (for scripts).")]

_PLANT_FILE_MAX_BYTES = 64 * 1024 * 1024


@contextmanager
def _reported() -> Iterator[None]:
    """Plant problems: every one on stderr (row or path, field, message), exit 2."""
    try:
        yield
    except InvalidPlant as e:
        typer.echo(f"error: {e.message}", err=True)
        for item in e.details.get("errors", [])[1:]:
            where = f"row {item['row']}" if "row" in item else item.get("path", "")
            field = f", field {item['field']!r}" if item.get("field") else ""
            typer.echo(f"  {where}{field}: {item.get('message', '')}", err=True)
        raise typer.Exit(2) from None


def _date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{option} must be a date YYYY-MM-DD, not {value!r}", 2)


# -- resources ------------------------------------------------------------------------------------


@resources_app.command("import")
def import_resources(
    file: Annotated[
        str, typer.Argument(help="CSV of resources, or a JSON/YAML plant document; '-' reads stdin.")
    ],
    csv_format: Annotated[
        bool | None,
        typer.Option("--csv/--document", help="Read as CSV or as a document [default: by extension]."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Import a plant: all or nothing. Resources are matched by code (new ones added, listed fields of
    existing ones replaced); a document may also carry holiday_calendars, patterns, assignments and
    exceptions. Every problem is reported with its row (CSV line) or path and field."""
    with guarded(), _reported():
        settings = load_settings()
        runtime.quiet_logging(settings)
        try:
            source = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            fail(f"cannot read {file}: {getattr(e, 'strerror', None) or e}", 2)
        is_csv = csv_format if csv_format is not None else file.lower().endswith(".csv")
        if is_csv:
            args: dict[str, Any] = {"csv_text": source}
        else:
            # Aliases limited, nothing PostgreSQL cannot store (NUL, lone surrogates, NaN, 65-bit
            # integers, deep nesting), as POST /resources/import; a local file may be larger than a
            # request body (ten thousand machines as YAML are a few MB).
            args = {"document": documents.loads(source, file, max_bytes=_PLANT_FILE_MAX_BYTES)}
        db = open_database(settings)
        with db.tx() as conn:
            summary, _ = plant.apply_document(conn, LOCAL_AGENT_ID, **args)
        if as_json:
            emit_json(summary)
            return
        table(
            [(section, c["created"], c["updated"], c["unchanged"]) for section, c in summary.items()],
            ["section", "created", "updated", "unchanged"],
        )


@resources_app.command("list")
def list_resources(
    level: Annotated[str | None, typer.Option(help="Only this level (enterprise ... work_unit).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The plant's resources in tree order, with their effective time zone."""
    with guarded():
        settings = load_settings()
        runtime.quiet_logging(settings)
        if level is not None and level not in LEVELS:
            fail(f"--level must be one of {', '.join(LEVELS)}, not {level!r}", 2)
        with open_database(settings).tx() as conn:
            rows, _ = store_plant.list_resources(conn, owner=LOCAL_AGENT_ID, level=level, limit=100_000)
            views = plant.resource_views(conn, rows)
        if as_json:
            emit_json(views)
            return
        table(
            [
                (
                    v["path"],
                    v["level"],
                    v["name"],
                    v["timezone"],
                    v["holiday_calendar"],
                    v["requires_scheduling"],
                )
                for v in views
            ],
            ["path", "level", "name", "timezone", "calendar", "scheduled"],
            empty="no resources: import some with `ordo resources import FILE`",
        )


@resources_app.command("tree")
def resource_tree(as_json: JsonFlag = False) -> None:
    """The plant as a tree."""
    with guarded():
        settings = load_settings()
        runtime.quiet_logging(settings)
        with open_database(settings).tx() as conn:
            roots = plant.hierarchy(conn, LOCAL_AGENT_ID)
        if as_json:
            emit_json(roots)
            return
        if not roots:
            typer.echo("no resources: import some with `ordo resources import FILE`")

        def show(node: dict[str, Any], depth: int) -> None:
            extra = f"  [{node['timezone']}]" if depth <= 1 else ""
            typer.echo(f"{'  ' * depth}{node['code']} ({node['level']}){extra}")
            for child in node["children"]:
                show(child, depth + 1)

        for root in roots:
            show(root, 0)


@resources_app.command("assign")
def assign(
    resource: Annotated[str, typer.Argument(help="Resource code or id (everything under it inherits).")],
    pattern: Annotated[str, typer.Argument(help=f"Pattern: {', '.join(BUILT_IN_NAMES)} or one of yours.")],
    effective_from: Annotated[str, typer.Option("--from", help="First date (YYYY-MM-DD).")],
    effective_to: Annotated[str | None, typer.Option("--to", help="Last date, included.")] = None,
    anchor: Annotated[str | None, typer.Option(help="Rotation day 1 [default: --from].")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Assign a pattern to a resource from a date (resources under it inherit it unless they have
    their own)."""
    with guarded(), _reported():
        settings = load_settings()
        runtime.quiet_logging(settings)
        doc = {"resource": resource, "pattern": pattern, "effective_from": effective_from}
        if effective_to is not None:
            doc["effective_to"] = effective_to
        if anchor is not None:
            doc["anchor"] = anchor
        with open_database(settings).tx() as conn:
            _, changes = plant.apply_document(
                conn, LOCAL_AGENT_ID, document={"assignments": [doc]}, single="assignments"
            )
            row = store_plant.get_assignment_by_key(conn, LOCAL_AGENT_ID, changes.assignments[0])
        out = store_plant.public_assignment(row)
        if as_json:
            emit_json(out)
        else:
            until = f" to {out['effective_to']}" if out["effective_to"] else ""
            typer.echo(f"{out['resource']} follows {out['pattern']} from {out['effective_from']}{until}")


# -- availability ---------------------------------------------------------------------------------


@availability_app.command("preview")
def preview(
    pattern: Annotated[
        str, typer.Option(help=f"{', '.join(BUILT_IN_NAMES)}, one of yours, or a pattern file.")
    ],
    tz: Annotated[str, typer.Option("--tz", help="IANA time zone, e.g. Europe/Chisinau.")],
    start: Annotated[str, typer.Option(help="First date (YYYY-MM-DD).")],
    days: Annotated[int, typer.Option(min=1, max=plant.MAX_DAYS, help="Number of days.")],
    holidays: Annotated[
        str | None, typer.Option(help="Public holidays: a country (ZA) or country-subdivision (US-CA).")
    ] = None,
    observed: Annotated[
        str, typer.Option(help=f"Which dates a moved holiday stops: {', '.join(OBSERVED_SETTINGS)}.")
    ] = "both",
    anchor: Annotated[str | None, typer.Option(help="Rotation day 1 [default: --start].")] = None,
    crew: Annotated[str | None, typer.Option(help="Show this crew's roster instead.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """What a pattern gives, computed and not stored: per day the planned hours, the holiday and the
    shifts in real time (DST included)."""
    with guarded(), _reported():
        settings = load_settings()
        runtime.quiet_logging(settings)
        first = _date(start, "--start")
        assert first is not None
        found = _pattern(pattern, settings)
        out = checked_preview(
            found,
            tz,
            first,
            days,
            holidays=holidays,
            observed=observed,
            anchor=_date(anchor, "--anchor"),
            crew=crew,
        )
        if as_json:
            emit_json(out)
            return
        rows = []
        for day in out["days"]:
            shifts = ", ".join(
                f"{s['shift_code']} {s['start'][11:16]}-{s['end'][11:16]}"
                + (f" ({s['crew']})" if s["crew"] else "")
                for s in day["shifts"]
            )
            rows.append(
                (day["date"], _weekday(day["date"]), f"{day['planned_hours']:g}", day["holiday"], shifts)
            )
        table(rows, ["date", "day", "hours", "holiday", "shifts"])
        typer.echo(f"total {out['total_hours']:g} h")


def _pattern(name: str, settings: Any) -> Any:
    found = built_in(name)
    if found is not None:
        return found
    path = Path(name)
    if path.suffix.lower() in (".json", ".yaml", ".yml") or path.is_file():
        doc = documents.read(name, max_bytes=_PLANT_FILE_MAX_BYTES)  # as a plant file: aliases limited
        problems = Problems()
        doc = {"name": path.stem, **doc} if isinstance(doc, dict) else doc
        parsed = parse_pattern(doc, problems, name)
        problems.raise_if_any(f"the pattern in {name}", storing=False)
        return parsed
    with open_database(settings).tx() as conn:
        try:
            return plant.find_pattern(conn, LOCAL_AGENT_ID, name)[0]
        except NotFound:
            fail(f"no pattern {name!r}: built-ins are {', '.join(BUILT_IN_NAMES)}, or give a pattern file", 2)


def _weekday(iso: str) -> str:
    return date.fromisoformat(iso).strftime("%a")


@availability_app.command("generate")
def generate(
    start: Annotated[str | None, typer.Option(help="First date [default: today, UTC].")] = None,
    end: Annotated[str | None, typer.Option(help="Last date, included.")] = None,
    days: Annotated[
        int | None, typer.Option(min=1, max=plant.MAX_DAYS, help="Number of days from start.")
    ] = None,
    resource: Annotated[
        list[str] | None,
        typer.Option("--resource", help="Only this resource and what is under it (repeatable)."),
    ] = None,
    keep_existing: Annotated[
        bool, typer.Option("--keep-existing", help="Only fill dates that hold no availability yet.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Generate and store availability now (what the schedule.generate tool does in a pipeline)."""
    with guarded(), _reported():
        settings = load_settings()
        runtime.quiet_logging(settings)
        first = _date(start, "--start") or datetime.now(UTC).date()
        if (end is None) == (days is None):
            fail("give exactly one of --end or --days", 2)
        last = _date(end, "--end") if end is not None else None
        why = range_problem(first, last) if last is not None else range_problem(first, days=days)
        if why is not None:
            fail(why, 2)
        last = last or first + timedelta(days=(days or 1) - 1)
        db = open_database(settings)
        out = plant.run_generation(
            db, LOCAL_AGENT_ID, first, last, resources=resource, regenerate=not keep_existing
        )
        if as_json:
            emit_json(out)
            return
        changes = out["changes"]
        typer.echo(
            f"generation {out['generation_id']}: {out['rows']} shifts for {out['resources']} resources, "
            f"{out['start']} to {out['end']}, in {out['duration_s']:.2f} s "
            f"({changes['added']} added, {changes['removed']} removed, {changes['changed']} changed)"
        )


@availability_app.command("show")
def show(
    start: Annotated[str, typer.Option(help="First date (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option(help="Last date, included.")],
    resources: Annotated[
        str | None, typer.Option(help="Comma-separated codes or ids (each with what is under it).")
    ] = None,
    shifts: Annotated[bool, typer.Option("--shifts", help="Every shift, not only days.")] = False,
    csv_output: Annotated[bool, typer.Option("--csv", help="Print CSV (the API's format=csv).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Stored availability: per resource its days (hours by status) and totals, or its shifts."""
    with guarded(), _reported():
        settings = load_settings()
        runtime.quiet_logging(settings)
        first, last = _date(start, "--start"), _date(end, "--end")
        assert first is not None and last is not None
        if last < first:
            fail("--end is before --start", 2)
        refs = [r.strip() for r in resources.split(",") if r.strip()] if resources else None
        with open_database(settings).tx() as conn:
            stored.snapshot(conn)
            targets = plant.report_targets(conn, refs, agent_id=LOCAL_AGENT_ID, owner=LOCAL_AGENT_ID)
            if csv_output:
                _write_all(plant.availability_csv(conn, targets, first, last, shifts=shifts))
                return
            report = plant.availability_report(conn, targets, first, last, shifts=shifts)
        if as_json:
            emit_json(report)
            return
        for resource in report["resources"]:
            t = resource["totals"]
            typer.echo(
                f"{resource['path']} ({resource['timezone']}): planned {t['planned_hours']:g} h, "
                f"operating {t['operating_hours']:g} h, maintenance {t['maintenance_hours']:g} h, "
                f"holiday {t['holiday_hours']:g} h"
            )
            rows = []
            for day in resource["days"]:
                if shifts:
                    for s in day["shifts"]:
                        rows.append(
                            (
                                day["date"],
                                s["shift_code"],
                                s["crew"],
                                s["start"][11:16],
                                s["end"][11:16],
                                s["hours"],
                                s["status"],
                                s["note"],
                            )
                        )
                elif day["status"] != "off":
                    rows.append(
                        (
                            day["date"],
                            day["status"],
                            day["planned_hours"],
                            day["operating_hours"],
                            day["holiday"],
                        )
                    )
            headers = (
                ["date", "shift", "crew", "start", "end", "hours", "status", "note"]
                if shifts
                else ["date", "status", "planned", "operating", "holiday"]
            )
            table(rows, headers, empty="  (nothing planned)")


def _write_all(chunks: Iterator[str]) -> None:
    """Write to stdout; a reader that stops early (`| head`) ends the command quietly."""
    try:
        for text in chunks:
            sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would report the pipe again when flushing stdout at exit: point it at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@availability_app.command("changes")
def changes(
    since: Annotated[
        str | None, typer.Option(help="A generation id or an ISO 8601 instant [default: the latest].")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """What generations changed (the API's GET /availability/changes)."""
    with guarded(), _reported():
        settings = load_settings()
        runtime.quiet_logging(settings)
        after: int | datetime | None = None
        if since is not None:
            try:
                after = int(since) if since.isascii() and since.isdigit() else datetime.fromisoformat(since)
                if isinstance(after, int) and after >= 2**63:
                    raise ValueError(since)
            except ValueError:
                fail(f"--since is a generation id or an ISO 8601 instant, not {since!r}", 2)
        with open_database(settings).tx() as conn:
            out = plant.changes_since(conn, LOCAL_AGENT_ID, after, limit=100)
        if as_json:
            emit_json(out)
            return
        table(
            [
                (
                    g["generation_id"],
                    g["created_at"][:19],
                    f"{g['start']}..{g['end']}",
                    g["rows"],
                    g["changes"]["added"],
                    g["changes"]["removed"],
                    g["changes"]["changed"],
                )
                for g in out["generations"]
            ],
            ["generation", "at", "range", "rows", "added", "removed", "changed"],
            empty="no generations",
        )
