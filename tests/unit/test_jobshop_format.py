"""The standard job-shop text format and `ordo solve`: parsing, errors that name the line, and the
command's human and JSON output, exit codes and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app  # the real `ordo`: a broken `ordo solve` fails here, never hides
from engine.tools.jobshop_format import parse_jobshop, to_jobshop
from store.errors import Permanent

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "catalogs" / "examples" / "jobshop"


def test_ft06_is_read_into_jobs_operations_and_machines():
    """Comments are skipped; 6 jobs of 6 operations, machines M0..M5, in processing order."""
    problem = parse_jobshop((DATA / "ft06.txt").read_text())

    assert [m["id"] for m in problem["machines"]] == [f"M{i}" for i in range(6)]
    assert len(problem["jobs"]) == 6 and all(len(j["operations"]) == 6 for j in problem["jobs"])
    assert problem["jobs"][0]["operations"][:2] == [
        {"id": "O0", "machines": [{"machine": "M2", "duration": 1}]},
        {"id": "O1", "machines": [{"machine": "M0", "duration": 3}]},
    ]


def test_writing_and_reading_an_instance_round_trips():
    jobs = [[(0, 5), (1, 4)], [(1, 2), (0, 6)]]

    problem = parse_jobshop(to_jobshop(jobs, "two jobs"))

    assert [
        [(int(o["machines"][0]["machine"][1:]), o["machines"][0]["duration"]) for o in j["operations"]]
        for j in problem["jobs"]
    ] == jobs


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# only a comment\n", "no 'jobs machines' line"),
        ("2\n0 1\n", ":1: expected 'jobs machines'"),
        ("2 2\n0 1 1 2\n", "announces 2 jobs, the file has 1"),
        ("1 2\n0 1 1\n", ":2: a job line needs (machine duration) pairs"),
        ("1 2\n0 1 2 3\n", ":2: machine 2 is outside 0..1"),
        ("1 2\n0 x\n", ":2: expected integers"),
        ("1 1\n0 -4\n", ":2: duration -4 is negative"),
    ],
)
def test_a_malformed_instance_is_refused_naming_the_line(text, message):
    with pytest.raises(Permanent, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        parse_jobshop(text, "bad.txt")
    assert error.value.code == "INVALID_INSTANCE"


# --- ordo solve ---------------------------------------------------------------------------------

runner = CliRunner()


def test_ordo_solve_prints_status_makespan_bound_and_wall_time():
    """ft06 from a shell: optimal, makespan 55, bound 55, and when the first plan came."""
    result = runner.invoke(app, ["solve", str(DATA / "ft06.txt"), "--workers", "2", "--time-limit", "30"])

    assert result.exit_code == 0, result.stderr
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines() if line.strip())
    assert (lines["status"], lines["makespan"], lines["bound"], lines["gap"]) == (
        "optimal",
        "55",
        "55",
        "0.00%",
    )
    assert lines["wall"].startswith("time ")
    assert lines["progress"].startswith("first plan ")


def test_ordo_solve_json_is_only_json_with_the_plan():
    """la01 with --json: stdout parses as JSON with status, makespan, bound, wall_s and every assignment."""
    result = runner.invoke(
        app, ["solve", str(DATA / "la01.txt"), "--json", "--workers", "2", "--time-limit", "30"]
    )

    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert (out["status"], out["makespan"], out["bound"]) == ("optimal", 666, 666)
    assert out["wall_s"] > 0 and len(out["assignments"]) == 50


def test_ordo_solve_reads_ordo_json_input_and_reports_infeasibility_with_exit_1(tmp_path):
    """A JSON solver input is accepted as is; no plan means exit code 1 and the reason is shown."""
    instance = tmp_path / "late.json"
    instance.write_text(
        json.dumps(
            {
                "jobs": [
                    {
                        "id": "J",
                        "deadline": 5,
                        "operations": [{"id": "a", "machines": [{"machine": "M", "duration": 10}]}],
                    }
                ]
            }
        )
    )

    result = runner.invoke(app, ["solve", str(instance)])

    assert result.exit_code == 1
    assert "infeasible" in result.stdout and "deadline" in result.stdout


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "UNREADABLE_FILE: cannot read"),
        ("2 2\n0 1 1 2\n", "INVALID_INSTANCE"),
        ("{not json", "INVALID_JSON"),
        (
            json.dumps(
                {
                    "jobs": [
                        {
                            "id": "J",
                            "operations": [{"id": "a", "machines": [{"machine": "M", "duration": 1}]}],
                        }
                    ],
                    "machines": [{"id": "N"}],
                }
            ),
            "UNKNOWN_MACHINE",
        ),
        (json.dumps({"jobs": []}), "INPUT_INVALID"),
    ],
)
def test_ordo_solve_errors_are_one_line_on_stderr_with_exit_2(tmp_path, content, fragment):
    """Bad input: no traceback, one line naming the problem, exit code 2, nothing on stdout."""
    path = tmp_path / "instance.txt"
    if content is not None:
        path.write_text(content)

    result = runner.invoke(app, ["solve", str(path)])

    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr
    assert "Traceback" not in result.stderr
