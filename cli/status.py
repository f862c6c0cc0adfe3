"""`ordo status`: the whole system at a glance, the same report as GET /status."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli import runtime
from cli.output import emit_json, table
from cli.runtime import guarded, load_settings, open_database
from store import status

__all__ = ["status_command"]


def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only (for scripts).")] = False,
) -> None:
    """Queue depth and lag, the last hour's runs by outcome, workers, the scheduler leader, webhook
    breakers (the same report as GET /status)."""
    with guarded():
        settings = load_settings()
        runtime.quiet_logging(settings)
        with open_database(settings).tx() as conn:
            report = status.overview(conn, status.Freshness.from_settings(settings))
        if as_json:
            emit_json(report)
            return
        _print(report)


def _print(r: dict[str, Any]) -> None:
    q, w, s, h = r["queue"], r["workers"], r["scheduler"], r["webhooks"]
    bands = ", ".join(f"{band} {n}" for band, n in reversed(q["due_by_priority_band"].items()))
    typer.echo(
        f"queue      {q['due']} due ({bands}), oldest waiting {_seconds(q['lag_s'])}; {q['leased']} leased"
    )
    typer.echo("last hour  " + ", ".join(f"{n} {outcome}" for outcome, n in r["runs_last_hour"].items()))
    typer.echo(f"workers    {w['alive']} alive ({w['slots']} slots, {w['busy']} busy), {w['lost']} lost")
    if w["processes"]:
        table(
            [
                (
                    p["host"],
                    p["pid"],
                    p["concurrency"],
                    p["busy"],
                    p["state"] if p["alive"] or p["state"] != "running" else "lost",
                    f"{_seconds(p['last_seen_s'])} ago",
                )
                for p in w["processes"]
            ],
            ["host", "pid", "concurrency", "busy", "state", "last seen"],
        )
    if s["leader"] is None:
        typer.echo("scheduler  no scheduler has ever led: start `ordo scheduler` (or `ordo up`)")
    else:
        flag = "" if s["ok"] else "  (stale: is a scheduler running?)"
        typer.echo(
            f"scheduler  leader {s['leader']} since {s['leader_since']}, "
            f"last tick {_seconds(s['last_tick_age_s'])} ago{flag}"
        )
    states = ", ".join(f"{n} {state}" for state, n in h["endpoints_by_state"].items())
    opened = f"; open breakers: {', '.join(h['breakers_open'])}" if h["breakers_open"] else ""
    typer.echo(f"webhooks   endpoints: {states}{opened}")


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"
