"""`ordo` with bad input: every mistake a person can make exits 2 with one `error:` line on
stderr, prints nothing on stdout (or, with --json, valid JSON only), never a traceback, never exit 1
("did not succeed") or 70 ("internal error"), and stores nothing.

The commands run as real processes against the test database, a few at a time (they are independent).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import scalar

PIPELINE = {"pipeline": [{"id": "a", "uses": "echo.message", "with": {"message": "hi"}}]}


def _task_json(params_literal: str = "{}", title: str = "x") -> str:
    """A manual task whose params are the JSON text `params_literal` (written as is: NaN, \\u0000 ...)."""
    return (
        f'{{"title": "{title}", "schedule_kind": "manual", '
        f'"payload": {{"params": {params_literal}, "pipeline": {json.dumps(PIPELINE["pipeline"])}}}}}'
    )


def _files(tmp: Path) -> dict[str, Path]:
    """Bad input files, by name."""
    deep = "[" * 3000 + "]" * 3000
    bomb = (
        "resources:\n  - code: E7\n    name: n\n    level: enterprise\n    metadata:\n      a0: &x0 [lol]\n"
        + "".join(f"      a{i}: &x{i} [{', '.join(f'*x{i - 1}' for _ in range(9))}]\n" for i in range(1, 9))
    )
    contents: dict[str, str | bytes] = {
        "nul.json": _task_json('{"x": "a\\u0000b"}'),
        "surrogate.json": _task_json('{"x": "\\ud800"}'),
        "nan.json": _task_json('{"x": NaN}'),
        "inf.json": _task_json('{"x": 1e999}'),
        "yaml_inf.yaml": "title: x\nschedule_kind: manual\npayload: {params: {x: .inf}, "
        "pipeline: [{id: a, uses: echo.message, with: {message: hi}}]}\n",
        "bigint.json": _task_json('{"x": 100000000000000000000000}'),
        "deep.json": _task_json(deep),
        "duplicate.yaml": "title: a\ntitle: b\nschedule_kind: manual\n"
        "payload: {pipeline: [{id: a, uses: echo.message, with: {message: hi}}]}\n",
        "input_inf.json": '{"expression": "a", "data": {"a": 1e999}}',
        "input_surrogate.json": '{"message": "\\ud800"}',
        "plant_nul.json": '{"resources": [{"code": "E1", "name": "a\\u0000b", "level": "enterprise"}]}',
        "plant_surrogate.json": '{"resources": [{"code": "E1", "name": "a\\ud800b", "level": "enterprise"}]}',
        "plant_deep.yaml": "resources:\n  - {code: E5, name: n, level: enterprise, metadata: {x: "
        + deep
        + "}}\n",
        "plant_duplicate.yaml": "resources:\n  - {code: E2, name: n, level: enterprise}\n"
        "resources:\n  - {code: E3, name: n, level: enterprise}\n",
        "plant_bomb.yaml": bomb,
        "latin1.yaml": b"\xff\xfe kind: weekly\n",
        "pattern_bomb.yaml": "kind: weekly\nrules: []\nnotes:\n  a0: &x0 [lol]\n"
        + "".join(f"  a{i}: &x{i} [{', '.join(f'*x{i - 1}' for _ in range(9))}]\n" for i in range(1, 9)),
    }
    paths = {}
    for name, content in contents.items():
        path = tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        paths[name] = path
    return paths


def _bad_commands(f: dict[str, Path]) -> dict[str, list[str]]:
    return {
        # Values PostgreSQL (or JSON) cannot hold, in a task file: refused like the API's safe_json does.
        "task add NUL": ["task", "add", str(f["nul.json"]), "--json"],
        "task add surrogate": ["task", "add", str(f["surrogate.json"]), "--json"],
        "task add NaN": ["task", "add", str(f["nan.json"]), "--json"],
        "task add 1e999": ["task", "add", str(f["inf.json"]), "--json"],
        "task add .inf": ["task", "add", str(f["yaml_inf.yaml"]), "--json"],
        "task add 80-bit integer": ["task", "add", str(f["bigint.json"]), "--json"],
        "task add 3000 levels": ["task", "add", str(f["deep.json"]), "--json"],
        "task add duplicate key": ["task", "add", str(f["duplicate.yaml"]), "--json"],
        "task run --params NaN": ["task", "run", "{task}", "--params", '{"x": NaN}', "--json"],
        "task run --params NUL": ["task", "run", "{task}", "--params", '{"x": "\\u0000"}', "--json"],
        "task run --params surrogate": ["task", "run", "{task}", "--params", '{"x": "\\ud800"}', "--json"],
        "task run --params deep": ["task", "run", "{task}", "--params", "[" * 5000 + "]" * 5000, "--json"],
        "event publish NUL": ["event", "publish", "orders.x", "--payload", str(f["nul.json"]), "--json"],
        "event publish surrogate": ["event", "publish", "orders.x", "--payload", str(f["surrogate.json"])],
        "event publish .inf": ["event", "publish", "orders.x", "--payload", str(f["yaml_inf.yaml"])],
        "tool run surrogate": ["tool", "run", "echo.message", "--input", str(f["input_surrogate.json"])],
        "tool run 1e999": ["tool", "run", "transform.jmespath", "--input", str(f["input_inf.json"])],
        "tool run deep": ["tool", "run", "transform.jmespath", "--input", str(f["deep.json"])],
        "preview cron after year 9999": [
            "preview",
            "--cron",
            "* * * * *",
            "--after",
            "9999-12-31T23:59:00+00:00",
            "--json",
        ],
        "preview cron after year 1": [
            "preview",
            "--cron",
            "* * * * *",
            "--after",
            "0001-01-01T00:00:00+00:00",
            "--json",
        ],
        "preview cron dtstart year 9999": [
            "preview",
            "--cron",
            "* * * * *",
            "--dtstart",
            "9999-12-31T23:59:00+00:00",
        ],
        "token create --name too long": [
            "token",
            "create",
            "--agent",
            "probe",
            "--scopes",
            "tasks:read",
            "--name",
            "n" * 201,
            "--json",
        ],
        "availability changes --since beyond bigint": [
            "availability",
            "changes",
            "--since",
            "9223372036854775808",
            "--json",
        ],
        "availability preview non-UTF-8 pattern file": [
            "availability",
            "preview",
            "--pattern",
            str(f["latin1.yaml"]),
            "--tz",
            "UTC",
            "--start",
            "2026-01-01",
            "--days",
            "2",
        ],
        "availability preview alias-bomb pattern file": [
            "availability",
            "preview",
            "--pattern",
            str(f["pattern_bomb.yaml"]),
            "--tz",
            "UTC",
            "--start",
            "2026-01-01",
            "--days",
            "2",
        ],
        "resources list --level unknown": ["resources", "list", "--level", "bogus", "--json"],
        "resources import NUL": ["resources", "import", str(f["plant_nul.json"]), "--json"],
        "resources import surrogate": ["resources", "import", str(f["plant_surrogate.json"]), "--json"],
        "resources import 3000 levels": ["resources", "import", str(f["plant_deep.yaml"]), "--json"],
        "resources import duplicate key": ["resources", "import", str(f["plant_duplicate.yaml"]), "--json"],
        "resources import alias bomb": ["resources", "import", str(f["plant_bomb.yaml"]), "--json"],
        "webhook rotate --overlap-s inf": ["webhook", "rotate", "{webhook}", "--overlap-s", "inf", "--json"],
        "webhook rotate --overlap-s 1e12": [
            "webhook",
            "rotate",
            "{webhook}",
            "--overlap-s",
            "1e12",
            "--json",
        ],
        "webhook receive --port 99999": [
            "webhook",
            "receive",
            "--secret",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "--port",
            "99999",
        ],
        "solve --time-limit nan": ["solve", "catalogs/examples/jobshop/ft06.txt", "--time-limit", "nan"],
    }


def _counts(db_url: str) -> dict[str, int]:
    from store.db import Database

    db = Database(db_url)
    try:
        return {
            table: scalar(db, f"SELECT count(*) FROM {table}")
            for table in ("task", "task_run", "event", "api_token", "resource")
        }
    finally:
        db.dispose()


def test_bad_input_exits_2_with_one_line_and_stores_nothing(ordo, db_url, tmp_path) -> None:
    task = json.loads(ordo.run("task", "add", "-", "--json", input=_task_json(title="target")).stdout)["id"]
    webhook = json.loads(
        ordo.run("webhook", "add", "https://example.com/hook", "--event", "a.b", "--json").stdout
    )["id"]
    before = _counts(db_url)
    commands = {
        name: [a.replace("{task}", task).replace("{webhook}", webhook) for a in args]
        for name, args in _bad_commands(_files(tmp_path)).items()
    }
    # The alias bomb would take all the memory it could: 2 GB of address space is plenty for `ordo`.
    limited = {"resources import alias bomb", "availability preview alias-bomb pattern file"}

    def run(name: str):
        args = commands[name]
        if name in limited:
            return _limited(ordo, args)
        return ordo.run(*args, timeout=60)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(commands, pool.map(run, commands), strict=True))

    wrong = {}
    for name, result in results.items():
        problems = []
        if result.returncode != 2:
            problems.append(f"exit {result.returncode}")
        if "Traceback" in result.stderr or "command_crashed" in result.stderr + result.stdout:
            problems.append("a crash report")
        if result.stdout.strip():
            if "--json" in commands[name]:
                try:
                    json.loads(result.stdout)
                except ValueError:
                    problems.append("stdout is not JSON")
            problems.append("something on stdout")
        lines = result.stderr.strip().splitlines()
        if not lines or not lines[-1].lower().startswith("error: "):  # ours, or a usage error
            problems.append("no 'error:' line")
        if problems:
            wrong[name] = f"{', '.join(problems)}: {result.stderr.strip().splitlines()[-1:]!r}"[:300]
    after = _counts(db_url)
    stored = {table: after[table] - n for table, n in before.items() if after[table] != n}
    assert not wrong and not stored, (
        "\n" + "\n".join(f"{k}: {v}" for k, v in sorted(wrong.items())) + f"\nrows stored: {stored}"
    )


def _limited(ordo, args: list[str]):
    import subprocess
    import sys

    from tests.acceptance.conftest import REPO

    def cap() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        env=ordo.env,
        cwd=REPO,
        timeout=120,
        preexec_fn=cap,
    )


@pytest.mark.parametrize(
    "url",
    ["notaurl", "postgresql://[::1", "postgresql://u:secret@127.0.0.1:99999/x"],
    ids=["not a URL", "unclosed IPv6 bracket", "port out of range"],
)
def test_a_malformed_database_url_is_a_configuration_error(ordo, url) -> None:
    """A DATABASE_URL that cannot be a PostgreSQL URL is the user's mistake: exit 2, one line, no
    internal error, and its password is not echoed."""
    result = ordo.run("task", "list", "--json", env={"DATABASE_URL": url})
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and "command_crashed" not in result.stderr, result.stderr
    assert "secret" not in result.stderr


def test_an_unreachable_database_exits_1_with_one_line(ordo) -> None:
    result = ordo.run("task", "list", "--json", env={"DATABASE_URL": "postgresql://127.0.0.1:1/x"})
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
