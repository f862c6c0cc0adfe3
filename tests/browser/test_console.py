"""The web console in a real browser against a real `ordo up`: signing in, tasks, a run followed live to
its end, a plan's Gantt chart, and the states a user meets when something is missing or wrong."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import uvicorn
import yaml
from sqlalchemy import text

from api import create_app
from engine.tools.jobshop_format import parse_jobshop
from store.settings import Settings
from tests.browser.conftest import Console, Ordo, _free_port
from tests.helpers import REGISTRY

REPO = Path(__file__).resolve().parents[2]
FT06 = parse_jobshop((REPO / "catalogs/examples/jobshop/ft06.txt").read_text())
# Connection refusals and 4xx answers the browser itself reports while a test provokes them.
REFUSED = r"Failed to load resource: net::ERR_CONNECTION_REFUSED"


def _status_401() -> str:
    return r"Failed to load resource: the server responded with a status of 401"


def _create_task(ordo: Ordo, token: str | None = None, **doc: Any) -> dict[str, Any]:
    body = {"schedule_kind": "manual", **doc}
    with ordo.client(token) as c:
        response = c.post("/tasks", json=body)
        assert response.status_code == 201, response.text
        return response.json()


def _agent_token(ordo: Ordo, *scopes: str) -> tuple[str, str, str]:
    """A new agent with a token holding `scopes`: (agent id, token id, token)."""
    with ordo.client() as c:
        agent = c.post("/agents", json={"name": f"viewer-{uuid.uuid4().hex[:8]}"}).json()
        issued = c.post(f"/agents/{agent['id']}/tokens", json={"scopes": list(scopes)}).json()
    return agent["id"], issued["id"], issued["token"]


def test_signing_in_with_a_token_shows_tasks_with_their_schedules(console: Console, ordo: Ordo) -> None:
    """Without a token the console asks for one; with it, the task list shows each schedule in words and
    its next five occurrences in the task's zone."""
    task = _create_task(
        ordo,
        title="Weekday planning",
        schedule_kind="rrule",
        schedule_expr="FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=5;BYMINUTE=30",
        timezone="Europe/Chisinau",
        payload={"pipeline": [{"id": "say", "uses": "echo.message", "with": {"message": "plan"}}]},
    )

    console.open()
    assert console.page.evaluate("location.hash").startswith("#/login")
    assert console.page.evaluate("sessionStorage.length") == 0
    console.shot("login")
    console.assert_accessible()
    console.sign_in(ordo.admin_token, "/tasks")

    row = console.page.locator(f"tr[data-task-id='{task['id']}']")
    assert row.locator(".schedule-text").inner_text() == "Every weekday at 05:30 (Europe/Chisinau)"
    occurrences = row.locator("ol.next li time")
    occurrences.nth(4).wait_for()
    with ordo.client() as c:
        expected = c.get(f"/tasks/{task['id']}/preview", params={"count": 5}).json()["occurrences"]
    assert [occurrences.nth(i).get_attribute("datetime") for i in range(5)] == expected
    assert all(occurrences.nth(i).inner_text().endswith("05:30") for i in range(5))
    # The token is in this tab's session storage and nowhere in the address.
    assert ordo.admin_token not in console.page.url
    assert console.page.evaluate("sessionStorage.getItem('ordo.token')") == ordo.admin_token
    console.shot("tasks")
    console.assert_accessible()


def test_run_now_is_followed_live_until_the_run_succeeds(console: Console, ordo: Ordo) -> None:
    """Run now opens the run page, which shows the run running and then succeeded, with the step's
    output, without a reload."""
    with _slow_http_server(delay_s=1.5) as url:
        task = _create_task(
            ordo,
            title="Fetch the slow report",
            payload={"pipeline": [{"id": "fetch", "uses": "http.request", "with": {"url": url}}]},
        )
        console.sign_in(ordo.admin_token, "/tasks")
        console.page.evaluate("window.__sameDocument = true")

        console.page.locator(f"tr[data-task-id='{task['id']}'] button", has_text="Run now").click()

        console.page.wait_for_function("() => /^#\\/runs\\/\\d+$/.test(location.hash)")
        state = console.page.locator("main .page-head h1 .badge")
        state.and_(console.page.locator("[data-state=running]")).wait_for(timeout=20_000)
        console.shot("run-running")
        state.and_(console.page.locator("[data-state=succeeded]")).wait_for(timeout=20_000)
    assert console.page.evaluate("window.__sameDocument") is True
    step = console.page.locator("li.step[data-step=fetch]")
    assert step.get_attribute("data-state") == "ok"
    assert '"status": 200' in step.locator("pre.json").inner_text()
    console.shot("run")
    console.assert_accessible()


def test_plan_page_draws_one_bar_per_operation_in_its_machines_lane(console: Console, ordo: Ordo) -> None:
    """ft06 solved by solver.solve with a break on every machine: 36 bars, each in the lane of the
    machine the plan gives it, none in the shaded break; the operations schedule.validate flags
    (planned before `now`) are outlined, with their message."""
    machines = [
        {"id": f"M{i}", "calendar": [{"start": 0, "end": 20}, {"start": 25, "end": 400}]} for i in range(6)
    ]
    task = _create_task(
        ordo,
        title="Solve ft06",
        payload={
            "params": {"problem": FT06, "machines": machines},
            "pipeline": [
                {
                    "id": "plan",
                    "uses": "solver.solve",
                    "with": {"jobs": "${params.problem.jobs}", "machines": "${params.machines}"},
                },
                {
                    "id": "check",
                    "uses": "schedule.validate",
                    "with": {
                        "problem": {"jobs": "${params.problem.jobs}", "now": 10},
                        "plan": "${steps.plan}",
                    },
                },
            ],
        },
    )
    with ordo.client() as c:
        run_id = c.post(f"/tasks/{task['id']}/run_now").json()["id"]
    run = ordo.wait_run(run_id)
    assert run["state"] == "succeeded", run
    plan = next(s for s in run["steps"] if s["id"] == "plan")["output"]
    violations = next(s for s in run["steps"] if s["id"] == "check")["output"]["violations"]
    assert violations, "ft06 starts operations before minute 10: the check must flag some"

    console.sign_in(ordo.admin_token, f"/runs/{run_id}/plan/plan")

    bars = console.page.evaluate(
        """() => [...document.querySelectorAll('svg.gantt g.op')].map(g => {
             const bar = g.querySelector('rect.bar').getBBox();
             const lanes = document.querySelector('svg.gantt g.lanes');
             const lane = lanes.querySelector(`rect[data-lane="${g.dataset.machine}"]`).getBBox();
             const shades = [...document.querySelectorAll(
                 `svg.gantt rect.shade-closed[data-machine="${g.dataset.machine}"]`)].map(r => r.getBBox());
             return {job: g.dataset.job, operation: g.dataset.operation, machine: g.dataset.machine,
                     inLane: bar.y >= lane.y && bar.y + bar.height <= lane.y + lane.height,
                     inBreak: shades.some(s => bar.x < s.x + s.width - 0.5 && s.x < bar.x + bar.width - 0.5),
                     breaks: shades.length, flagged: g.classList.contains('op-flagged')};
           })"""
    )
    assert len(bars) == len(plan["assignments"]) == 36
    drawn = {(b["job"], b["operation"]): b for b in bars}
    for a in plan["assignments"]:
        bar = drawn[(a["job"], a["operation"])]
        assert bar["machine"] == a["machine"] and bar["inLane"], (a, bar)
        assert bar["breaks"] >= 1 and not bar["inBreak"], (a, bar)
    lanes = console.page.eval_on_selector_all("svg.gantt rect.lane", "rs => rs.map(r => r.dataset.lane)")
    assert lanes == [f"M{i}" for i in range(6)]
    flagged = {(o["job"], o["operation"]) for v in violations for o in v["operations"]}
    assert {k for k, b in drawn.items() if b["flagged"]} == flagged
    assert console.page.locator("ol.violations li").count() == len(violations)

    # Hover and keyboard both show an operation's details.
    first = console.page.locator("svg.gantt g.op").first
    first.hover()
    tooltip = console.page.locator("#tooltip")
    tooltip.wait_for(state="visible")
    assert first.get_attribute("data-job") in tooltip.inner_text()
    first.focus()
    console.page.keyboard.press("ArrowRight")
    focused = console.page.evaluate("document.activeElement.dataset.operation")
    assert focused and focused in tooltip.inner_text()
    console.shot("plan")
    console.assert_accessible()


def test_a_new_agent_sees_empty_states_that_say_what_to_do(console: Console, ordo: Ordo) -> None:
    """An agent with no tasks and no runs gets explanations, not blank tables."""
    _, _, token = _agent_token(ordo, "tasks:read", "runs:read")
    console.sign_in(token, "/tasks")
    assert console.wait_ready() == "empty"
    assert "No tasks yet." in console.page.locator("main").inner_text()
    console.go("#/runs")
    assert "No runs yet." in console.page.locator("main").inner_text()
    console.shot("runs-empty")
    console.assert_accessible()
    console.go("#/")
    assert "No runs in the last hour." in console.page.locator("main").inner_text()
    console.shot("overview-empty")
    console.assert_accessible()


def test_refused_expired_and_revoked_tokens_send_the_user_to_sign_in_saying_why(
    console: Console, ordo: Ordo
) -> None:
    console.expect_messages(_status_401())
    console.open("#/login")
    console.page.fill("#token", "ordo_aaaaaaaaaaaa_" + "x" * 43)
    console.page.click("form.login button[type=submit]")
    message = console.page.locator("#login-message")
    message.get_by_text("That token was refused").wait_for()

    # A token past its expiry is refused with the API's reason.
    _, expired_id, expired = _agent_token(ordo, "tasks:read", "runs:read")
    with ordo.db.tx() as conn:
        conn.execute(
            text("UPDATE api_token SET expires_at = now() - interval '1 minute' WHERE id = :id"),
            {"id": expired_id},
        )
    console.page.fill("#token", expired)
    console.page.click("form.login button[type=submit]")
    message.get_by_text("expired").wait_for()
    console.shot("token-expired")

    agent_id, token_id, token = _agent_token(ordo, "tasks:read", "runs:read")
    console.sign_in(token, "/runs")
    with ordo.client() as c:
        assert c.delete(f"/agents/{agent_id}/tokens/{token_id}").status_code == 200
    console.page.wait_for_timeout(300)  # the API hears the revocation by NOTIFY
    console.page.evaluate("location.hash = '#/tasks'")
    console.page.wait_for_function("() => location.hash.startsWith('#/login')")
    message.get_by_text("revoked").wait_for()
    assert console.page.evaluate("sessionStorage.getItem('ordo.token')") is None
    console.shot("signed-out")


def test_the_console_says_when_the_api_is_down_and_recovers_by_itself(console: Console, ordo: Ordo) -> None:
    """With the API process gone the page says so and keeps trying; when it is back, the page loads."""
    console.expect_messages(REFUSED)
    port = _free_port()
    settings = Settings(database_url=ordo.url, api_rate_limit_per_min=100_000)
    with _api_server(settings, port):
        console.base = f"http://127.0.0.1:{port}"
        console.sign_in(ordo.admin_token, "/runs")
    console.page.evaluate("location.hash = '#/tasks'")
    banner = console.page.locator("#banner")
    banner.get_by_text("does not answer").wait_for(timeout=10_000)
    console.shot("api-down")
    with _api_server(settings, port):
        banner.wait_for(state="hidden", timeout=20_000)
        console.wait_ready(states=("ready", "empty"))


def test_narrow_screens_get_the_same_pages_without_sideways_scrolling(
    narrow_console: Console, ordo: Ordo
) -> None:
    _create_task(
        ordo,
        title="Nightly export with a long descriptive title for small screens",
        schedule_kind="cron",
        schedule_expr="30 2 * * *",
        timezone="America/New_York",
        payload={"pipeline": [{"id": "say", "uses": "echo.message", "with": {"message": "export"}}]},
    )
    narrow_console.sign_in(ordo.admin_token, "/tasks")
    for route in ("#/tasks", "#/runs", "#/"):
        narrow_console.go(route)
        overflow = narrow_console.page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, (route, overflow)
    narrow_console.go("#/tasks")
    narrow_console.shot("tasks-narrow")
    narrow_console.assert_accessible()


# -- helpers --------------------------------------------------------------------------------------


@contextmanager
def _slow_http_server(delay_s: float) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that answers every GET after `delay_s` seconds."""

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(delay_s)
            body = b'{"rows": 3}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/report"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def _api_server(settings: Settings, port: int) -> Iterator[None]:
    """The API (with the console) in this process on a fixed port, stopped when the block ends."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, registry=REGISTRY),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API server did not start"
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(15)


# The shipped example plant (catalogs/examples/plant/acme.yaml) with its Johannesburg site on two shifts.
PLANT = yaml.safe_load((REPO / "catalogs/examples/plant/acme.yaml").read_text())
TWO_SHIFTS = {"assignments": [{"resource": "JHB", "pattern": "two_shift", "effective_from": "2025-01-01"}]}


def test_availability_heatmap_marks_holidays(console: Console, ordo: Ordo) -> None:
    """A two-shift plant in Johannesburg, generated over Freedom Day 2025 (Sunday 27 April, observed
    Monday 28): the heatmap has a row per machine, and the observed holiday's cells are marked."""
    _generate_plant(ordo)
    console.sign_in(ordo.admin_token, "/availability?start=2025-04-25&days=7&resources=PRESS-L1")

    rows = console.page.eval_on_selector_all("svg.heatmap g.hm-row", "rs => rs.map(r => r.dataset.resource)")
    assert rows == ["PRESS-01", "PRESS-02"]
    holiday = console.page.locator("g.hm-cell[data-resource='PRESS-01'][data-date='2025-04-28']")
    assert holiday.get_attribute("data-kind") == "holiday"
    assert "Freedom Day" in holiday.get_attribute("data-holiday")
    assert "holiday" in holiday.get_attribute("aria-label")
    friday = console.page.locator("g.hm-cell[data-resource='PRESS-01'][data-date='2025-04-25']")
    assert friday.get_attribute("data-kind") == "operating"
    assert friday.locator("text").text_content() == "16"
    holiday.hover()
    console.page.locator("#tooltip").get_by_text("Freedom Day").wait_for()
    console.shot("availability")
    console.assert_accessible()


def test_plan_of_plant_machines_shades_their_stored_shifts(console: Console, ordo: Ordo) -> None:
    """A plan in real time on the plant's presses: the Gantt shades the night between Friday's shifts
    from the stored availability, and says where the shading comes from."""
    _generate_plant(ordo)
    ops = [{"id": f"op{i}", "machines": [{"machine": "PRESS-01", "duration": 300}]} for i in range(4)]
    friday = "2025-04-25T06:00:00+02:00"  # times as instants: the plan comes back in real time
    problem = {
        "jobs": [
            {"id": "order-7", "release": friday, "operations": ops},
            {
                "id": "order-8",
                "release": friday,
                "operations": [{"id": "op0", "machines": [{"machine": "PRESS-02", "duration": 90}]}],
            },
        ],
    }
    task = _create_task(
        ordo,
        title="Plan the presses",
        payload={
            "params": {"problem": problem},
            "pipeline": [{"id": "plan", "uses": "solver.solve", "with": "${params.problem}"}],
        },
    )
    with ordo.client() as c:
        run_id = c.post(f"/tasks/{task['id']}/run_now").json()["id"]
    assert ordo.wait_run(run_id)["state"] == "succeeded"

    console.sign_in(ordo.admin_token, f"/runs/{run_id}/plan/plan")

    assert "the plant's stored availability" in console.page.locator("dl.facts").inner_text()
    closed = console.page.locator("svg.gantt rect.shade-closed[data-machine='PRESS-01']")
    assert closed.count() >= 1  # 22:00 to 06:00 after Friday's two shifts
    assert console.page.locator("svg.gantt rect.shade-closed[data-machine='PRESS-02']").count() >= 1
    assert console.page.locator("svg.gantt g.op").count() == 5
    console.shot("plan-plant")


def _generate_plant(ordo: Ordo) -> None:
    """The example plant imported (idempotent) and its availability generated for 25 April to 1 May 2025."""
    with ordo.client() as c:
        for document in (PLANT, TWO_SHIFTS):
            assert c.post("/resources/import", json=document).status_code == 200
        queued = c.post("/schedules/generate", json={"start": "2025-04-25", "end": "2025-05-01"})
        assert queued.status_code == 202, queued.text
    run = ordo.wait_run(queued.json()["id"])
    assert run["state"] == "succeeded", run


def test_admins_see_the_system_from_status(console: Console, ordo: Ordo) -> None:
    """An admin's overview reads GET /status: the queue, the live workers (ordo up runs one), the
    scheduler leader, and the last hour's attempts by outcome."""
    console.sign_in(ordo.admin_token)
    queue = console.page.locator("[data-card=queue]")
    assert re.search(r"\d+ due", queue.inner_text())
    workers = console.page.locator("[data-card=workers]").inner_text()
    assert re.search(r"[1-9]\d* alive", workers), workers
    assert "Leading" in console.page.locator("[data-card=scheduler]").inner_text()
    assert (
        "per minute" in console.page.locator("#hour-h + p").inner_text()
        or "No runs" in console.page.locator("main").inner_text()
    )
    console.shot("overview-admin")
    console.assert_accessible()


def test_a_task_whose_rule_is_too_costly_to_preview_says_so(console: Console, ordo: Ordo) -> None:
    """A rule that costs far more to expand than it yields: the task's page lists the occurrences found
    within the preview budget and says why the list stops there (not "no further occurrences")."""
    # Daily at one hour, walked second by second: the first occurrence is DTSTART itself (found at
    # once), each next one costs a day of seconds, so no machine, quiet or loaded, lists ten in 1 s.
    every_but = ",".join(str(n) for n in range(1, 60))
    start = (datetime.now(UTC) + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    other_hours = ",".join(str(h) for h in range(24) if h != start.hour)
    task = _create_task(
        ordo,
        title="Daily, the hard way",
        schedule_kind="rrule",
        schedule_expr=(
            f"DTSTART:{start:%Y%m%dT%H%M%SZ}\nRRULE:FREQ=SECONDLY\n"
            f"EXRULE:FREQ=SECONDLY;BYSECOND={every_but}\nEXRULE:FREQ=SECONDLY;BYMINUTE={every_but}\n"
            f"EXRULE:FREQ=SECONDLY;BYHOUR={other_hours}"
        ),
        payload={"pipeline": [{"id": "say", "uses": "echo.message", "with": {"message": "tick"}}]},
    )
    console.sign_in(ordo.admin_token, f"/tasks/{task['id']}")

    note = console.page.locator("section[aria-labelledby=next-h] p[role=note]")
    note.wait_for()
    assert "Only the first" in note.inner_text() and "took more than 1 s to preview" in note.inner_text()
    assert console.page.locator("section[aria-labelledby=next-h] ol.next li").count() >= 1
    console.assert_accessible()
