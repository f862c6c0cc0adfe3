"""The `ordo` command line: one clear line and a non-zero exit on bad input, JSON with --json."""

import json
import textwrap

import pytest

from store.db import Database
from tests.helpers import scalar

NIGHTLY = textwrap.dedent(
    """\
    title: Nightly report
    schedule_kind: rrule
    schedule_expr: FREQ=DAILY;BYHOUR=2;BYMINUTE=30
    timezone: Europe/Chisinau
    payload:
      params: {site: chisinau}
      pipeline:
        - id: hello
          uses: echo.message
          with: {message: "report for ${params.site}"}
    """
)


def count_tasks(url):
    db = Database(url)
    try:
        return scalar(db, "SELECT count(*) FROM task")
    finally:
        db.dispose()


def test_task_add_list_and_show(ordo, db_url, tmp_path):
    (tmp_path / "nightly.yaml").write_text(NIGHTLY)
    added = ordo.run("task", "add", str(tmp_path / "nightly.yaml"), "--json")
    assert added.returncode == 0, added.stderr
    task = json.loads(added.stdout)
    assert task["title"] == "Nightly report" and task["next_fire_at"]
    listed = json.loads(ordo.run("task", "list", "--json").stdout)
    assert [t["id"] for t in listed] == [task["id"]]
    human = ordo.run("task", "list")
    assert "Nightly report" in human.stdout and "rrule" in human.stdout
    paused = json.loads(ordo.run("task", "pause", task["id"], "--json").stdout)
    assert paused["status"] == "paused"


BAD_DOCUMENTS = {
    "invalid cron": ("schedule_kind: cron\nschedule_expr: '0 25 * * *'\n", "hour"),
    "invalid rrule": ("schedule_kind: rrule\nschedule_expr: 'FREQ=SOMETIMES'\n", "FREQ"),
    "unknown zone": (
        "schedule_kind: rrule\nschedule_expr: 'FREQ=DAILY'\ntimezone: Mars/Olympus\n",
        "Mars/Olympus",
    ),
    "once in the past": ("schedule_kind: once\nschedule_expr: '2001-01-01T00:00:00Z'\n", "past"),
}
PIPELINE = "payload:\n  pipeline:\n    - {id: a, uses: echo.message, with: {message: hi}}\n"
BAD_PIPELINES = {
    "unknown tool": "payload:\n  pipeline:\n    - {id: a, uses: no.such.tool}\n",
    "step without uses": "payload:\n  pipeline:\n    - {id: a, with: {message: hi}}\n",
    "duplicate ids": "payload:\n  pipeline:\n    - {id: a, uses: echo.message, with: {message: hi}}\n"
    "    - {id: a, uses: echo.message, with: {message: hi}}\n",
    "later step": "payload:\n  pipeline:\n"
    "    - {id: a, uses: echo.message, with: {message: '${steps.b.message}'}}\n"
    "    - {id: b, uses: echo.message, with: {message: hi}}\n",
    "schema": "payload:\n  pipeline:\n    - {id: a, uses: echo.message, with: {text: hi}}\n",
}


@pytest.mark.parametrize("case", sorted(BAD_DOCUMENTS) + sorted(BAD_PIPELINES))
def test_bad_tasks_exit_non_zero_with_one_line_and_store_nothing(ordo, db_url, tmp_path, case):
    if case in BAD_DOCUMENTS:
        body, hint = BAD_DOCUMENTS[case]
        doc = f"title: bad\n{body}{PIPELINE}"
    else:
        doc, hint = f"title: bad\nschedule_kind: manual\n{BAD_PIPELINES[case]}", ""
    (tmp_path / "bad.yaml").write_text(doc)
    result = ordo.run("task", "add", str(tmp_path / "bad.yaml"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert hint in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert count_tasks(db_url) == 0


def test_unreadable_files_are_reported_plainly(ordo, tmp_path):
    missing = ordo.run("task", "add", str(tmp_path / "nope.yaml"))
    assert missing.returncode != 0 and missing.stderr.startswith("error: cannot read")
    (tmp_path / "broken.yaml").write_text("title: [unclosed\n")
    broken = ordo.run("task", "add", str(tmp_path / "broken.yaml"))
    assert broken.returncode != 0 and "not valid YAML or JSON" in broken.stderr


def test_preview_prints_occurrences_with_offsets(ordo):
    result = ordo.run(
        "preview",
        "--rrule",
        "FREQ=DAILY;BYHOUR=8;BYMINUTE=0",
        "--tz",
        "Europe/Chisinau",
        "--dtstart",
        "2026-03-27T08:00:00",
        "--count",
        "4",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "2026-03-27T08:00:00+02:00",
        "2026-03-28T08:00:00+02:00",
        "2026-03-29T08:00:00+03:00",
        "2026-03-30T08:00:00+03:00",
    ]
    cron = ordo.run(
        "preview",
        "--cron",
        "30 6 * * 1-5",
        "--tz",
        "UTC",
        "--after",
        "2026-11-20T00:00:00Z",
        "--count",
        "2",
        "--json",
    )
    assert json.loads(cron.stdout) == ["2026-11-20T06:30:00+00:00", "2026-11-23T06:30:00+00:00"]
    bad = ordo.run("preview", "--cron", "* * *", "--count", "2")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")


def test_tool_list_and_tool_run(ordo):
    tools = json.loads(ordo.run("tool", "list", "--json").stdout)
    assert "echo.message" in {t["address"] for t in tools}
    ran = ordo.run(
        "tool",
        "run",
        "transform.jmespath",
        "--input",
        "-",
        input='{"expression": "sum(xs)", "data": {"xs": [1, 2, 3]}}',
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {"result": 6}
    refused = ordo.run("tool", "run", "echo.message", "--input", "-", input='{"msg": 1}')
    assert refused.returncode != 0 and "'message' is a required property" in refused.stderr
    unknown = ordo.run("tool", "run", "no.such", "--input", "-", input="{}")
    assert unknown.returncode == 2 and "unknown tool" in unknown.stderr


def test_runs_shows_steps_with_state_timing_and_output(ordo, tmp_path):
    (tmp_path / "t.yaml").write_text("title: hello\nschedule_kind: manual\n" + PIPELINE)
    task = json.loads(ordo.run("task", "add", str(tmp_path / "t.yaml"), "--json").stdout)
    worker = ordo.spawn("worker", "--concurrency", "2", name="worker")
    done = ordo.run("task", "run", task["id"], "--wait", "--json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["state"] == "succeeded"
    assert run["steps"][0]["output"] == {"message": "hi"}
    listed = json.loads(ordo.run("runs", "--task", task["id"], "--json").stdout)
    assert [r["id"] for r in listed] == [run["id"]]
    human = ordo.run("runs").stdout
    assert "succeeded" in human and '{"message": "hi"}' in human and "ms" in human
    assert json.loads(ordo.run("runs", "--failed", "--json").stdout) == []
    worker.terminate()
    assert worker.wait(20) == 0
