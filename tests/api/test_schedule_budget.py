"""Previews of rules that cost far more to expand than they yield answer within the preview budget:
the occurrences found by then with `complete: false` and the reason, or 422 SCHEDULE_TOO_COSTLY when
there are none; such a task cannot be created when its first occurrence cannot be found in time."""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise

import httpx

from scheduler.expand import PREVIEW_BUDGET_S
from tests.api.conftest import echo_task

ALL_BUT = ",".join(str(n) for n in range(1, 60))
# One occurrence an hour, found by examining every second three times over (three rules merged).
HOURLY_THE_HARD_WAY = (
    f"RRULE:FREQ=SECONDLY\nEXRULE:FREQ=SECONDLY;BYSECOND={ALL_BUT}\nEXRULE:FREQ=SECONDLY;BYMINUTE={ALL_BUT}"
)
NOTHING_LEFT = "RRULE:FREQ=MINUTELY\nEXRULE:FREQ=MINUTELY"


def test_the_reported_secondly_rule_previews_all_1000_occurrences(
    client: httpx.Client, alice: dict[str, str]
) -> None:
    """FREQ=SECONDLY narrowed to 03:00:00 took ~78 s for 1,000 occurrences; it is expanded as the DAILY
    rule it equals, so all of them come back, complete."""
    body = {"kind": "rrule", "expr": "FREQ=SECONDLY;BYSECOND=0;BYMINUTE=0;BYHOUR=3", "count": 1000}
    response = client.post("/schedules/preview", json=body, headers=alice)

    assert response.status_code == 200, response.text
    out = response.json()
    assert out["complete"] is True and out["cut_short"] is None
    assert len(out["occurrences"]) == 1000
    assert all(o.endswith("T03:00:00+00:00") for o in out["occurrences"])
    days = [datetime.fromisoformat(o).date() for o in out["occurrences"]]
    assert all((b - a).days == 1 for a, b in pairwise(days))


def test_a_costly_preview_gives_what_it_found_in_time_and_says_why(
    client: httpx.Client, alice: dict[str, str]
) -> None:
    body = {"kind": "rrule", "expr": HOURLY_THE_HARD_WAY, "count": 1000}
    response = client.post("/schedules/preview", json=body, headers=alice)

    assert response.status_code == 200, response.text
    out = response.json()
    assert out["complete"] is False
    assert out["cut_short"]["code"] == "SCHEDULE_TOO_COSTLY"
    assert "EXRULE" in out["cut_short"]["message"]
    assert out["cut_short"]["details"]["budget_s"] == PREVIEW_BUDGET_S
    found = out["occurrences"]
    assert 1 <= len(found) < 1000 and out["cut_short"]["details"]["found"] == len(found)
    assert all(o.endswith(":00:00+00:00") for o in found)


def test_a_preview_that_finds_nothing_in_time_is_a_422(client: httpx.Client, alice: dict[str, str]) -> None:
    response = client.post(
        "/schedules/preview", json={"kind": "rrule", "expr": NOTHING_LEFT, "count": 5}, headers=alice
    )

    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == "SCHEDULE_TOO_COSTLY"
    assert error["details"]["found"] == 0 and error["details"]["count"] == 5


def test_a_task_whose_first_occurrence_cannot_be_found_in_time_is_refused_and_nothing_is_stored(
    client: httpx.Client, alice: dict[str, str]
) -> None:
    response = client.post(
        "/tasks", json=echo_task(schedule_kind="rrule", schedule_expr=NOTHING_LEFT), headers=alice
    )

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "SCHEDULE_TOO_COSTLY"
    assert response.json()["details"]["path"] == "schedule_expr"
    assert client.get("/tasks", headers=alice).json()["items"] == []


def test_a_task_preview_of_a_costly_rule_is_cut_short_with_the_reason(
    client: httpx.Client, alice: dict[str, str]
) -> None:
    created = client.post(
        "/tasks", json=echo_task(schedule_kind="rrule", schedule_expr=HOURLY_THE_HARD_WAY), headers=alice
    )
    assert created.status_code == 201, created.text

    response = client.get(f"/tasks/{created.json()['id']}/preview", params={"count": 1000}, headers=alice)

    assert response.status_code == 200, response.text
    out = response.json()
    assert out["complete"] is False and out["cut_short"]["code"] == "SCHEDULE_TOO_COSTLY"
    assert 1 <= len(out["occurrences"]) < 1000
