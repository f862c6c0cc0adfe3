"""Human tables and JSON for `ordo` commands. With --json, stdout carries only JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import typer

__all__ = ["emit_json", "table"]


def emit_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], *, empty: str = "(none)") -> None:
    if not rows:
        typer.echo(empty)
        return
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    typer.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."
