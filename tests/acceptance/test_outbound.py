"""Outbound calls from a real `ordo worker`: a task owned by an agent with `tools:http` tries to reach
a local service (here, a test server standing in for the API or a metadata endpoint) by every
spelling of loopback, directly and through a redirect. None gets through unless allowed."""

import signal
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scheduler import task_document
from store import agents
from store import runs as store_runs
from store import tasks as store_tasks
from store.db import Database
from tests.helpers import REGISTRY, rows, wait_for


class Target(BaseHTTPRequestHandler):
    hits: list[tuple[int, str]] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        port = self.server.server_address[1]
        type(self).hits.append((port, self.path))
        if self.path.startswith("/hop?to="):
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{self.path.split('=')[1]}/secret")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", "6")
        self.end_headers()
        self.wfile.write(b"secret")


def _serve():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Target)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def servers():
    Target.hits = []
    both = [_serve(), _serve()]
    yield [s.server_address[1] for s in both]
    for server in both:
        server.shutdown()
        server.server_close()


SPELLINGS = ["127.0.0.1", "localhost", "0.0.0.0", "2130706433", "0x7f000001", "127.1", "[::ffff:127.0.0.1]"]


def _probe(conn, agent_id, url):
    values = task_document.validate(
        {
            "title": url,
            "schedule_kind": "manual",
            "max_retries": 3,
            "payload": {
                "pipeline": [
                    {"id": "get", "uses": "http.request", "with": {"url": url, "follow_redirects": True}}
                ]
            },
        },
        REGISTRY,
        now=datetime.now(UTC),
    )
    task = store_tasks.create(conn, values, agent_id)
    return store_runs.enqueue(conn, task["id"])[0]


def _ended(db, run_ids):
    return rows(
        db, "SELECT run_id, state, attempt, error FROM task_run WHERE final AND run_id = ANY(:i)", i=run_ids
    )


def test_a_worker_refuses_every_loopback_spelling_and_a_refused_redirect(ordo, db_url, servers):
    target, other = servers
    db = Database(db_url)
    try:
        with db.tx() as conn:
            agent = agents.ensure_agent(conn, "prober")
            agents.create_token(conn, agent["id"], ["tasks:write", "tools:http"])
            probes = [_probe(conn, agent["id"], f"http://{host}:{target}/secret") for host in SPELLINGS]
        strict = ordo.spawn("worker", env={"ORDO_OUTBOUND_ALLOW": ""}, name="strict")
        wait_for(lambda: len(_ended(db, probes)) == len(probes), timeout=90, what="every probe to end")
        ended = _ended(db, probes)
        assert {(r["state"], r["attempt"], r["error"]["code"]) for r in ended} == {
            ("dead", 1, "OUTBOUND_REFUSED")
        }
        assert Target.hits == []
        strict.send_signal(signal.SIGTERM)
        assert strict.wait(60) == 0

        # The first hop is allowed (its address and port are listed); the redirect leads elsewhere.
        with db.tx() as conn:
            hop = _probe(conn, agent["id"], f"http://127.0.0.1:{target}/hop?to={other}")
        ordo.spawn("worker", env={"ORDO_OUTBOUND_ALLOW": f"127.0.0.1:{target}"}, name="allowing")
        wait_for(lambda: _ended(db, [hop]), timeout=90, what="the redirected probe to end")
        ((run,),) = [_ended(db, [hop])]
        assert (run["state"], run["error"]["code"]) == ("dead", "OUTBOUND_REFUSED")
        assert str(other) in run["error"]["message"]
        assert Target.hits == [(target, f"/hop?to={other}")]
    finally:
        db.dispose()
