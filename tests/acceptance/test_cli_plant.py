"""`ordo resources` and `ordo availability` as subprocesses: the fixed preview JSON, the README's
walkthrough on the example plant, and bad input (exit 2, every problem named, nothing stored)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.helpers import scalar

EXAMPLES = Path(__file__).resolve().parents[2] / "catalogs" / "examples" / "plant"


def test_preview_prints_the_fixed_json_shape(ordo) -> None:
    done = ordo.run(
        "availability",
        "preview",
        "--pattern",
        "24x7",
        "--tz",
        "Europe/Chisinau",
        "--holidays",
        "MD",
        "--start",
        "2026-03-28",
        "--days",
        "3",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert set(out) == {"days", "total_hours"}
    assert [set(d) for d in out["days"]] == [{"date", "planned_hours", "holiday", "shifts"}] * 3
    assert [(d["date"], d["planned_hours"]) for d in out["days"]] == [
        ("2026-03-28", 24.0),
        ("2026-03-29", 23.0),
        ("2026-03-30", 24.0),
    ]
    (shift,) = out["days"][1]["shifts"]
    assert shift == {
        "start": "2026-03-29T00:00:00+02:00",
        "end": "2026-03-30T00:00:00+03:00",
        "shift_code": "C",
        "crew": None,
    }
    assert out["total_hours"] == 71.0


@pytest.mark.parametrize(
    ("observed", "holidays"),
    [("both", ["2026-07-03", "2026-07-04"]), ("actual", ["2026-07-04"]), ("observed_only", ["2026-07-03"])],
)
def test_preview_applies_the_observed_setting(ordo, observed: str, holidays: list[str]) -> None:
    done = ordo.run(
        "availability",
        "preview",
        "--pattern",
        "24x7",
        "--tz",
        "America/New_York",
        "--holidays",
        "US",
        "--observed",
        observed,
        "--start",
        "2026-07-02",
        "--days",
        "4",
        "--json",
    )
    days = json.loads(done.stdout)["days"]
    assert [d["date"] for d in days if d["holiday"]] == holidays
    assert all(d["planned_hours"] == 0 and d["shifts"] == [] for d in days if d["holiday"])


def test_preview_of_a_rotation_names_its_crews_and_anchor(ordo) -> None:
    done = ordo.run(
        "availability",
        "preview",
        "--pattern",
        "dupont",
        "--tz",
        "UTC",
        "--start",
        "2026-01-01",
        "--anchor",
        "2025-12-31",
        "--days",
        "2",
        "--json",
    )
    days = json.loads(done.stdout)["days"]
    assert [[s["crew"] for s in d["shifts"]] for d in days] == [["B", "A"], ["B", "A"]]


def test_bad_preview_arguments_exit_2_naming_each(ordo) -> None:
    done = ordo.run(
        "availability",
        "preview",
        "--pattern",
        "two_shift",
        "--tz",
        "Mars/Base",
        "--holidays",
        "ZZ",
        "--start",
        "2026-01-01",
        "--days",
        "3",
    )
    assert done.returncode == 2
    assert "field 'timezone'" in done.stderr and "field 'holidays'" in done.stderr
    assert done.stdout == ""


def test_the_readme_walkthrough_runs_on_the_example_plant(ordo, db_url) -> None:
    assert ordo.run("resources", "import", str(EXAMPLES / "acme.yaml")).returncode == 0
    assert ordo.run("resources", "import", str(EXAMPLES / "machines.csv")).returncode == 0
    tree = json.loads(ordo.run("resources", "tree", "--json").stdout)
    assert [site["code"] for site in tree[0]["children"]] == ["CHI", "JHB"]
    for resource, pattern, start in (
        ("PRESS", "two_shift", "2026-01-01"),
        ("PRESS-L2", "24x7", "2026-04-06"),
        ("ASSY", "dupont", "2026-01-01"),
        ("PAINT", "continental", "2026-01-01"),
    ):
        done = ordo.run("resources", "assign", resource, pattern, "--from", start)
        assert done.returncode == 0, done.stderr
    generated = json.loads(
        ordo.run("availability", "generate", "--start", "2026-04-01", "--days", "61", "--json").stdout
    )
    assert (generated["resources"], generated["fresh"]) == (8, True)
    report = json.loads(
        ordo.run(
            "availability",
            "show",
            "--resources",
            "PRESS-01",
            "--start",
            "2026-05-04",
            "--end",
            "2026-05-04",
            "--shifts",
            "--json",
        ).stdout
    )
    (press,) = report["resources"]
    first = press["days"][0]["shifts"][0]
    assert (first["start"], first["end"], first["status"], first["note"]) == (
        "2026-05-04T06:00:00+02:00",
        "2026-05-04T10:00:00+02:00",
        "maintenance",
        "Monthly preventive maintenance",
    )
    shown = ordo.run(
        "availability", "show", "--resources", "JHB", "--start", "2026-04-27", "--end", "2026-04-27", "--csv"
    )
    rows = list(csv.DictReader(io.StringIO(shown.stdout)))
    assert {r["status"] for r in rows} == {"holiday"} and {r["holiday"] for r in rows} == {"Freedom Day"}
    assert len(rows) == 6
    changes = json.loads(ordo.run("availability", "changes", "--json").stdout)
    assert changes["generations"][0]["generation_id"] == generated["generation_id"]
    assert scalar_rows(db_url) == generated["rows"]


def scalar_rows(db_url: str) -> int:
    from store.db import Database

    db = Database(db_url, pool_size=1)
    try:
        return scalar(db, "SELECT count(*) FROM availability")
    finally:
        db.dispose()


def test_a_bad_import_exits_2_listing_every_row_and_stores_nothing(ordo, db_url, tmp_path) -> None:
    bad = tmp_path / "plant.csv"
    bad.write_text("code,level,parent\nACME,enterprise,\nS1,site,NOPE\nS1,site,ACME\nM,machine,S1\n")
    done = ordo.run("resources", "import", str(bad))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("error: the CSV was refused, nothing was stored: row")
    assert any("row 4, field 'code'" in line for line in lines)
    assert any("row 5, field 'level'" in line for line in lines)
    assert any("row 3, field 'parent'" in line for line in lines)
    assert scalar_count(db_url, "resource") == 0


def scalar_count(db_url: str, table: str) -> int:
    from store.db import Database

    db = Database(db_url, pool_size=1)
    try:
        return scalar(db, f"SELECT count(*) FROM {table}")
    finally:
        db.dispose()
