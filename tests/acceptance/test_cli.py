"""The `ordo` command line: one clear line and exit code 2 on bad input, JSON with --json (the API's
shapes, `id` everywhere), and every operation the API offers."""

import json
import subprocess
import sys
import textwrap
from datetime import datetime

import pytest
import yaml
from sqlalchemy import text

from store.db import Database
from tests.acceptance.conftest import REPO
from tests.helpers import scalar, wait_for

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


def _alias_chain(levels: int, width: int) -> str:
    """A task whose description is `levels` nested lists of `width` aliases of the one before."""
    lines = ["x0: &x0 [lol]"] + [
        f"x{i}: &x{i} [{', '.join(f'*x{i - 1}' for _ in range(width))}]" for i in range(1, levels)
    ]
    return "\n".join(lines) + f"\ntitle: bomb\nschedule_kind: manual\ndescription: *x{levels - 1}\n{PIPELINE}"


@pytest.mark.parametrize(
    "levels, width",
    [pytest.param(20, 2, id="20 lines doubling (33 MB once)"), pytest.param(10, 9, id="billion laughs")],
)
def test_an_alias_bomb_is_refused_unexpanded_and_nothing_is_stored(ordo, db_url, tmp_path, levels, width):
    (tmp_path / "bomb.yaml").write_text(_alias_chain(levels, width))
    result = ordo.run("task", "add", str(tmp_path / "bomb.yaml"), timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert "alias" in result.stderr or "larger than" in result.stderr, result.stderr
    assert count_tasks(db_url) == 0


def test_a_file_of_many_tasks_is_added_whole_or_not_at_all(ordo, db_url, tmp_path):
    """A YAML stream of documents is added in one go; a JSON list with two bad documents among many
    names each bad one by its position (stderr), exits 2 and stores none of them."""
    stream = "---\n".join(NIGHTLY.replace("Nightly report", f"report {i}") for i in range(3))
    (tmp_path / "many.yaml").write_text(stream)
    added = ordo.run("task", "add", str(tmp_path / "many.yaml"), "--json")
    assert added.returncode == 0, added.stderr
    assert [t["title"] for t in json.loads(added.stdout)] == ["report 0", "report 1", "report 2"]

    good = {
        "title": "ok",
        "schedule_kind": "cron",
        "schedule_expr": "*/5 * * * *",
        "payload": {"pipeline": [{"id": "a", "uses": "echo.message", "with": {"message": "hi"}}]},
    }
    docs = [good] * 200
    docs[57] = {**good, "schedule_expr": "0 25 * * *"}
    docs[140] = {**good, "priority": 0}
    (tmp_path / "many.json").write_text(json.dumps(docs))
    refused = ordo.run("task", "add", str(tmp_path / "many.json"))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert lines[0].startswith("task 58: ") and "hour" in lines[0]
    assert lines[1].startswith("task 141: priority")
    assert lines[-1] == "error: 2 of 200 tasks are invalid; nothing was stored"
    assert count_tasks(db_url) == 3

    docs[57], docs[140] = good, good
    (tmp_path / "many.json").write_text(json.dumps(docs))
    many = ordo.run("task", "add", str(tmp_path / "many.json"))
    assert many.returncode == 0 and many.stdout.strip() == "200 tasks added (ordo task list shows them)"
    assert count_tasks(db_url) == 203


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
    assert json.loads(cron.stdout) == {
        "occurrences": ["2026-11-20T06:30:00+00:00", "2026-11-23T06:30:00+00:00"],
        "complete": True,
        "cut_short": None,
    }
    bad = ordo.run("preview", "--cron", "* * *", "--count", "2")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")
    # A rule too costly to preview in about a second: what was found, and why it stopped, on stderr.
    every_but = ",".join(str(n) for n in range(1, 60))
    hourly_the_hard_way = (
        f"RRULE:FREQ=SECONDLY\nEXRULE:FREQ=SECONDLY;BYSECOND={every_but}\n"
        f"EXRULE:FREQ=SECONDLY;BYMINUTE={every_but}"
    )
    costly = ordo.run("preview", "--rrule", hourly_the_hard_way, "--count", "1000")
    assert costly.returncode == 0, costly.stderr
    assert 1 <= len(costly.stdout.splitlines()) < 1000
    assert "incomplete (SCHEDULE_TOO_COSTLY)" in costly.stderr
    nothing = ordo.run("preview", "--rrule", "RRULE:FREQ=MINUTELY\nEXRULE:FREQ=MINUTELY", "--count", "3")
    assert nothing.returncode == 2 and "0 of the 3" in nothing.stderr


def test_a_reader_that_leaves_early_ends_the_command_quietly(ordo):
    """`ordo tool list | head -1`: once stdout's reader has gone, the command stops with the exit status
    of a process ended by SIGPIPE, and says nothing (it crashed with an internal error before)."""
    with subprocess.Popen(
        [sys.executable, "-m", "cli.main", "tool", "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ordo.env,
        cwd=REPO,
    ) as proc:
        proc.stdout.close()  # the reader leaves before the command writes its first line
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == 141
    assert err == b""


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


def _add(ordo, tmp_path, doc: str, name: str = "t.yaml") -> dict:
    (tmp_path / name).write_text(doc)
    added = ordo.run("task", "add", str(tmp_path / name), "--json")
    assert added.returncode == 0, added.stderr
    return json.loads(added.stdout)


def _json(result) -> object:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_task_ids_are_taken_by_a_unique_prefix(ordo, db_url, tmp_path):
    """Like git: a prefix of four or more hex digits names a task if it is unique; an ambiguous one is
    refused with the candidates; an exact id always works."""
    first = _add(ordo, tmp_path, "title: one\nschedule_kind: manual\n" + PIPELINE, "a.yaml")
    second = _add(ordo, tmp_path, "title: two\nschedule_kind: manual\n" + PIPELINE, "b.yaml")
    db = Database(db_url)
    try:
        with db.tx() as conn:
            for old, new in ((first, "abcd1111"), (second, "abcd2222")):
                conn.execute(
                    text("UPDATE task SET id = CAST(:new AS uuid) WHERE id = CAST(:old AS uuid)"),
                    {"new": new + old["id"][8:], "old": old["id"]},
                )
    finally:
        db.dispose()

    unique = _json(ordo.run("task", "show", "abcd1", "--json"))
    dashed = _json(ordo.run("task", "show", "ABCD2222-" + second["id"][9:13], "--json"))
    exact = _json(ordo.run("task", "show", "abcd1111" + first["id"][8:], "--json"))
    ambiguous = ordo.run("task", "show", "abcd")
    too_short = ordo.run("task", "show", "abc")
    unknown = ordo.run("task", "run", "ffff0000")

    assert unique["title"] == "one" and dashed["title"] == "two" and exact["title"] == "one"
    assert ambiguous.returncode == 2 and "ambiguous" in ambiguous.stderr and "abcd2222" in ambiguous.stderr
    assert too_short.returncode == 2 and "at least 4" in too_short.stderr
    assert unknown.returncode == 2 and "no task id starts with" in unknown.stderr


def test_task_show_lists_the_next_five_occurrences_in_the_tasks_zone(ordo, tmp_path):
    task = _add(ordo, tmp_path, NIGHTLY)

    shown = _json(ordo.run("task", "show", task["id"], "--json"))
    readable = ordo.run("task", "show", task["id"][:8]).stdout

    assert len(shown["next_occurrences"]) == 5
    # What people read is the same document as YAML (a stored RFC 5545 block as a literal block).
    assert yaml.safe_load(readable) == shown
    assert "schedule_expr: |-\n  DTSTART;TZID=" in readable
    assert all(o.endswith(("+02:00", "+03:00")) and "T02:30:00" in o for o in shown["next_occurrences"])
    # next_fire_at is that first occurrence, written as every stored time is: UTC with microseconds.
    assert shown["next_fire_at"].endswith(".000000+00:00")
    first = datetime.fromisoformat(shown["next_occurrences"][0])
    assert datetime.fromisoformat(shown["next_fire_at"]) == first


def test_edit_and_delete_do_what_patch_and_delete_do(ordo, tmp_path):
    task = _add(ordo, tmp_path, NIGHTLY)
    (tmp_path / "patch.yaml").write_text("priority: 7\nbackoff: {base_s: 5}\n")

    edited = _json(ordo.run("task", "edit", task["id"][:8], str(tmp_path / "patch.yaml"), "--json"))
    deleted = _json(ordo.run("task", "delete", task["id"], "--json"))
    gone = ordo.run("task", "show", task["id"])

    assert (edited["id"], edited["priority"], edited["version"]) == (task["id"], 7, 2)
    assert edited["backoff"] == {"base_s": 5.0, "cap_s": 600.0, "jitter": 0.2}
    assert deleted == {"id": task["id"], "deleted": True}
    assert gone.returncode == 2 and "not found" in gone.stderr


def test_a_run_is_canceled_and_a_dead_run_retried_from_the_cli(ordo, tmp_path):
    """cancel withdraws a queued run; a run that died gets one more attempt under the same id with
    `ordo run retry`, and succeeds once its task is fixed."""
    broken = "title: needs msg\nschedule_kind: manual\nmax_retries: 0\npayload:\n  pipeline:\n" + (
        "    - {id: a, uses: echo.message, with: {message: '${params.msg}'}}\n"
    )
    task = _add(ordo, tmp_path, broken)
    queued = _json(ordo.run("task", "run", task["id"], "--json"))
    canceled = _json(ordo.run("run", "cancel", str(queued["id"]), "--json"))
    ordo.spawn("worker", "--concurrency", "2", name="worker")
    died = ordo.run("task", "run", task["id"], "--wait", "--json")
    (tmp_path / "fix.yaml").write_text(
        "payload:\n  params: {msg: fixed}\n  pipeline:\n"
        + ("    - {id: a, uses: echo.message, with: {message: '${params.msg}'}}\n")
    )
    _json(ordo.run("task", "edit", task["id"], str(tmp_path / "fix.yaml"), "--json"))
    dead = json.loads(died.stdout)
    retried = _json(ordo.run("run", "retry", str(dead["id"]), "--json"))
    done = wait_for(
        lambda: (r := _json(ordo.run("run", str(dead["id"]), "--json")))["state"] == "succeeded" and r,
        timeout=30,
        what="the retried run to succeed",
    )

    assert queued["state"] == "queued" and canceled["state"] == "canceled"
    assert died.returncode == 1 and dead["state"] == "dead"
    assert retried["id"] == dead["id"] and retried["state"] in ("failed", "running", "succeeded")
    assert [a["state"] for a in done["attempts"]] == ["failed", "succeeded"]
    assert done["steps"][0]["output"] == {"message": "fixed"}
    again = ordo.run("run", "retry", str(dead["id"]))
    assert again.returncode == 2 and "only a failed or dead run" in again.stderr


def test_events_and_tokens_from_the_cli(ordo, tmp_path):
    subscriber = _add(
        ordo,
        tmp_path,
        "title: on order\nschedule_kind: event\nschedule_expr: orders.created\npayload:\n  pipeline:\n"
        "    - {id: a, uses: echo.message, with: {message: 'order ${event.payload.n}'}}\n",
    )
    (tmp_path / "order.json").write_text('{"n": 7}')

    event = _json(
        ordo.run("event", "publish", "orders.created", "--payload", str(tmp_path / "order.json"), "--json")
    )
    listed = _json(ordo.run("event", "list", "--json"))
    created = _json(ordo.run("token", "create", "--agent", "planner", "--scopes", "tasks:read", "--json"))
    tokens = _json(ordo.run("token", "list", "--agent", "planner", "--json"))
    revoked = _json(ordo.run("token", "revoke", created["prefix"], "--json"))
    unknown = ordo.run("token", "revoke", "ordo_aaaaaaaaaaaa")

    assert [r["task_id"] for r in event["runs"]] == [subscriber["id"]]
    assert listed[0]["id"] == event["id"] and listed[0]["payload"] == {"n": 7}
    assert created["token"].startswith(created["prefix"] + "_") and created["scopes"] == ["tasks:read"]
    assert [t["id"] for t in tokens] == [created["id"]] and "token" not in tokens[0]
    assert revoked["id"] == created["id"] and revoked["revoked_at"]
    assert unknown.returncode == 2 and "no token" in unknown.stderr


def test_wait_says_why_a_run_has_not_ended(ordo, tmp_path):
    """No worker is running: --wait gives up after its timeout with exit 3 and says so."""
    task = _add(ordo, tmp_path, "title: hello\nschedule_kind: manual\n" + PIPELINE)

    result = ordo.run("task", "run", task["id"], "--wait", "--timeout-s", "1")

    assert result.returncode == 3
    assert "has not ended after 1 s" in result.stderr and "no worker is running" in result.stderr
    assert "ordo up" in result.stderr


def test_runs_shows_history_and_upcoming_shows_what_is_written_ahead(ordo, tmp_path):
    task = _add(
        ordo, tmp_path, "title: every minute\nschedule_kind: cron\nschedule_expr: '* * * * *'\n" + PIPELINE
    )
    before = ordo.run("runs", "--upcoming").stdout  # no scheduler has run yet
    scheduler = ordo.spawn("scheduler", name="scheduler")
    upcoming = wait_for(
        lambda: len(u := _json(ordo.run("runs", "--upcoming", "--limit", "5", "--json"))) == 5 and u,
        timeout=60,
        what="the scheduler to write occurrences ahead",
    )
    history = _json(ordo.run("runs", "--json"))
    human = ordo.run("runs", "--upcoming")
    scheduler.terminate()
    scheduler.wait(20)

    assert {r["state"] for r in upcoming} == {"scheduled"} and {r["task_id"] for r in upcoming} == {
        task["id"]
    }
    times = [r["scheduled_for"] for r in upcoming]
    assert times == sorted(times)
    assert all(r["state"] != "scheduled" for r in history)
    assert human.stdout.count("scheduled") >= 5
    assert "nothing scheduled in the next" in before and "ordo task show TASK" in before


BAD_COMMANDS = {
    "unknown task": ["task", "show", "ffffffff-ffff-ffff-ffff-ffffffffffff"],
    "not a task id": ["task", "show", "zz"],
    "bad params": ["task", "run", "ffff0000", "--params", "{"],
    "unknown state": ["runs", "--state", "lost"],
    "scheduled is upcoming": ["runs", "--state", "scheduled"],
    "unknown run": ["run", "show", "999999"],
    "run id not a number": ["run", "show", "abc"],
    "bad cron": ["preview", "--cron", "* *"],
    "count beyond the limit": ["preview", "--cron", "* * * * *", "--count", "1001"],
    "missing file": ["task", "add", "/nonexistent/task.yaml"],
    "bad limit": ["task", "list", "--limit", "0"],
    "bad status": ["task", "list", "--status", "sleeping"],
    "bad topic": ["event", "publish", "bad topic!"],
    "unknown token": ["token", "revoke", "nope"],
    "unknown scope": ["token", "create", "--agent", "x", "--scopes", "tasks:fly"],
}


@pytest.mark.parametrize("case", sorted(BAD_COMMANDS))
def test_bad_input_exits_2_with_a_message(ordo, case):
    result = ordo.run(*BAD_COMMANDS[case])

    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert "error" in result.stderr.lower()


def test_help_shows_flags_as_flags_and_defaults(ordo):
    runs = ordo.run("runs", "--help").stdout
    up = ordo.run("up", "--help").stdout

    assert "<bool>" not in runs and "--json " in runs and "[default: 20" in runs
    assert "default: 8080" in up and "ORDO_API_PORT" in up
