"""Browser tests of the web console: Playwright for Python driving Debian's Chromium (headless), against
a real `ordo up` (scheduler, worker and API) on 127.0.0.1 and the session's embedded PostgreSQL.

One browser and one `ordo up` serve the whole session; each test gets a fresh browser context (its own
session storage, so it signs in itself). Every page must log no console error or warning: the `page`
fixture fails the test otherwise, unless the test names the messages it expects. Screenshots go to
test-artifacts/browser/ (gitignored).

Chromium is the system's (`apt-get install chromium`; ORDO_TEST_CHROMIUM names another executable).
Playwright never downloads a browser here. Without Chromium the tests fail in CI (`CI` set) and are
skipped, with the reason, elsewhere.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from api.bootstrap import ensure_admin_token
from store.db import Database
from tests.conftest import REPO, cloned_database

ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    # The machine's network is closed: without these Chromium keeps trying to reach Google's hosts.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
NARROW = {"width": 390, "height": 844}


def _chromium() -> str:
    candidates = [os.environ.get("ORDO_TEST_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    message = (
        "Chromium was not found: the console's browser tests need it. Install Debian's package "
        "(`apt-get install -y chromium`; .ci/run does this) or set ORDO_TEST_CHROMIUM to an executable."
    )
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    # Package scope: sync Playwright keeps an asyncio loop running on this thread while it is open,
    # and tests after the browser tests that call asyncio.run() would find it.
    # Playwright starts Chromium with a fresh temporary user-data-dir of its own and removes it after.
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, timeout=60_000)
        try:
            yield chromium
        finally:
            chromium.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Ordo:
    """A running `ordo up` and what tests need to drive it."""

    base: str
    db: Database
    admin_token: str
    url: str
    log: Path

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.base,
            headers={"Authorization": f"Bearer {token or self.admin_token}"},
            timeout=30,
        )

    def wait_run(self, run_id: int, timeout: float = 60) -> dict[str, Any]:
        """Poll the API until the run has ended; return it."""
        deadline = time.monotonic() + timeout
        with self.client() as c:
            while True:
                run = c.get(f"/runs/{run_id}").json()
                if run["state"] in ("succeeded", "dead", "canceled", "skipped"):
                    return run
                if time.monotonic() > deadline:
                    raise AssertionError(f"run {run_id} still {run['state']} after {timeout} s")
                time.sleep(0.1)


@pytest.fixture(scope="package")
def ordo(server_url: str, template_db: str) -> Iterator[Ordo]:
    """`ordo up` on a database of its own: the scheduler, a worker and the API in real processes."""
    with cloned_database(server_url, template_db, prefix="browser") as url:
        yield from _ordo_up(url)


def _ordo_up(url: str) -> Iterator[Ordo]:
    db = Database(url, pool_size=2)
    token = ensure_admin_token(db)
    assert token is not None
    port = _free_port()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / "ordo-up.log"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "ORDO_API_WORKERS": "1",
        "ORDO_POLL_S": "0.2",
        "ORDO_LOG_FORMAT": "json",
        "ORDO_API_RATE_LIMIT_PER_MIN": "100000",
        "ORDO_OUTBOUND_ALLOW": "127.0.0.1",  # the run-now test's step calls a server of the test's
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"`ordo up` exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"`ordo up` was not ready within 90 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield Ordo(base=base, db=db, admin_token=token, url=url, log=log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        db.dispose()


@dataclass
class Console:
    """A browser page on the console, recording what the page logged."""

    page: Any
    base: str
    messages: list[str] = field(default_factory=list)
    expected: list[re.Pattern[str]] = field(default_factory=list)

    def open(self, route: str = "") -> None:
        """Load the console at a route (#/tasks, ...) and wait until the page has drawn its data."""
        self.page.goto(f"{self.base}/ui/{route}")
        self.wait_ready()

    def go(self, route: str) -> None:
        """Move to a route inside the loaded console (no reload) and wait for its data."""
        self.page.evaluate(
            """route => {
                 document.getElementById('main').dataset.state = 'loading';
                 if (location.hash === route) window.dispatchEvent(new HashChangeEvent('hashchange'));
                 else location.hash = route;
               }""",
            route,
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 20_000, states: tuple[str, ...] = ()) -> str:
        """Wait until the page has drawn (any state but loading, or one of `states`); return the state."""
        wanted = (
            ", ".join(f"main[data-state={s}]" for s in states) or "main[data-state]:not([data-state=loading])"
        )
        self.page.wait_for_selector(wanted, timeout=timeout)
        return self.page.eval_on_selector("main", "m => m.dataset.state")

    def sign_in(self, token: str, route: str = "") -> None:
        self.open("#/login" + (f"?next={quote(route, safe='/')}" if route else ""))
        self.page.fill("#token", token)
        self.page.evaluate("document.getElementById('main').dataset.state = 'loading'")
        self.page.click("form.login button[type=submit]")
        self.page.wait_for_function("() => !location.hash.startsWith('#/login')")
        self.wait_ready()

    def shot(self, name: str, full_page: bool = True) -> Path:
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def assert_accessible(self) -> None:
        """axe-core's WCAG 2 A/AA rules find nothing on the page as it is now."""
        from axe_playwright_python.sync_playwright import Axe

        results = Axe().run(self.page, options={"runOnly": ["wcag2a", "wcag2aa", "best-practice"]})
        found = [
            f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes'][:3]]}"
            for v in results.response["violations"]
        ]
        assert not found, "\n".join(found)

    def expect_messages(self, *patterns: str) -> None:
        """Console messages this test provokes on purpose (regular expressions)."""
        self.expected.extend(re.compile(p) for p in patterns)

    def unexpected(self) -> list[str]:
        return [m for m in self.messages if not any(p.search(m) for p in self.expected)]


def _console(browser: Any, base: str, viewport: dict[str, int]) -> Iterator[Console]:
    context = browser.new_context(viewport=viewport, base_url=base)
    page = context.new_page()
    console = Console(page=page, base=base)
    page.on(
        "console",
        lambda m: console.messages.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None,
    )
    page.on("pageerror", lambda e: console.messages.append(f"pageerror: {e}"))
    try:
        yield console
    finally:
        context.close()
    assert not console.unexpected(), f"the console logged: {console.unexpected()}"


@pytest.fixture
def console(browser: Any, ordo: Ordo) -> Iterator[Console]:
    """A fresh tab on the console at 1280x800; the test fails if the page logs an error or warning."""
    yield from _console(browser, ordo.base, VIEWPORT)


@pytest.fixture
def narrow_console(browser: Any, ordo: Ordo) -> Iterator[Console]:
    """The same on a phone-sized screen (390x844)."""
    yield from _console(browser, ordo.base, NARROW)
