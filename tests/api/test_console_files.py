"""The web console's files under /ui, and the `schedule_text` the console shows for each task."""

from __future__ import annotations

import re

import httpx

from api.console import UI_DIR
from tests.api.conftest import echo_task

_IMPORT = re.compile(r"""^import\s[^"']*["'](\.[^"']+)["'];""", re.M)


def test_ui_is_served_with_a_policy_that_allows_only_its_own_files(client: httpx.Client) -> None:
    """/ui redirects to /ui/, whose page forbids scripts, styles and connections from anywhere else."""
    redirect = client.get("/ui")
    assert redirect.status_code == 308 and redirect.headers["location"] == "/ui/"
    page = client.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["referrer-policy"] == "no-referrer"
    assert 'src="js/app.js"' in page.text
    assert client.get("/ui/js/app.js").headers["content-type"].startswith("text/javascript")


def test_every_module_the_console_imports_is_served(client: httpx.Client) -> None:
    """Walk the JavaScript imports from app.js: each one resolves to a file the API serves."""
    todo, seen = ["js/app.js"], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        response = client.get(f"/ui/{path}")
        assert response.status_code == 200, path
        base = path.rsplit("/", 1)[0]
        for target in _IMPORT.findall(response.text):
            parts = [*base.split("/"), *target.split("/")]
            resolved: list[str] = []
            for part in parts:
                if part == "..":
                    resolved.pop()
                elif part != ".":
                    resolved.append(part)
            todo.append("/".join(resolved))
    assert seen == {str(p.relative_to(UI_DIR)) for p in UI_DIR.rglob("*.js")}
    # index.html preloads every module but the entry point, so the browser fetches them in parallel.
    preloaded = set(re.findall(r'<link rel="modulepreload" href="([^"]+)">', client.get("/ui/").text))
    assert preloaded == seen - {"js/app.js"}


def test_unknown_console_files_are_404_and_nothing_outside_ui_is_served(client: httpx.Client) -> None:
    assert client.get("/ui/nope.js").status_code == 404
    assert client.get("/ui/../api/console.py").status_code == 404


def test_tasks_carry_their_schedule_in_words(client: httpx.Client, alice: dict[str, str]) -> None:
    """Every task shape the API returns has schedule_text, in the task's zone."""
    created = client.post(
        "/tasks",
        json=echo_task(schedule_kind="cron", schedule_expr="30 5 * * 1-5", timezone="Europe/Chisinau"),
        headers=alice,
    ).json()
    text = "At 05:30, Monday through Friday (Europe/Chisinau)"
    assert created["schedule_text"] == text
    assert client.get(f"/tasks/{created['id']}", headers=alice).json()["schedule_text"] == text
    listed = client.get("/tasks", headers=alice).json()["items"]
    assert [t["schedule_text"] for t in listed] == [text]
    paused = client.post(f"/tasks/{created['id']}/pause", headers=alice).json()
    assert paused["schedule_text"] == text
    manual = client.post("/tasks", json=echo_task(), headers=alice).json()
    assert manual["schedule_text"] == "Only when run by hand"
