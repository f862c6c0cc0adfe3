"""Property-based API tests: schemathesis generates requests from the app's own OpenAPI document, for
every operation, data that fits the document and data that breaks it, sends them to the real server
on a real database with an admin token, and checks that no response is a 5xx, that every status
code, content type, header and body matches what the document declares, that data the document
rules out is rejected, and that routes refuse requests without valid credentials.

`positive_data_acceptance` is left out on purpose: a task document can satisfy the JSON Schema and
still be refused with 422 (an RRULE that never fires, a tool that does not exist), which is the
validation the API exists to do. Examples per operation are bounded so that the run fits in CI.

(The pytest plugin's `from_fixture` does not work with pytest 9, so operations are driven here with
schemathesis' Python API and Hypothesis directly.)
"""

from __future__ import annotations

import os
import threading
import traceback
from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from scheduler.service import SchedulerConfig, SchedulerService
from store.db import Database
from tests.helpers import running_worker

# ORDO_SCHEMATHESIS_EXAMPLES=200 explores further than CI does.
_SCALE = int(os.environ.get("ORDO_SCHEMATHESIS_EXAMPLES", "12"))
_EXAMPLES = {GenerationMode.POSITIVE: _SCALE, GenerationMode.NEGATIVE: max(1, _SCALE * 2 // 3)}


@pytest.fixture
def live_system(db: Database) -> Iterator[None]:
    """A worker and a leading scheduler, so runs execute and /health/ready is ready (not a 503)."""
    stop = threading.Event()
    scheduler = SchedulerService(
        db, SchedulerConfig(tick_s=0.5), structlog.get_logger("test"), "schemathesis"
    )
    thread = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    thread.start()
    try:
        with running_worker(db):
            yield
    finally:
        stop.set()
        thread.join(10)


def test_the_api_matches_its_openapi_document(base_url: str, admin_token: str, live_system: None) -> None:
    """No operation answers generated input with a 5xx or with anything its OpenAPI entry does not declare."""
    # The token goes in as the document's HTTPBearer scheme, not as a plain header, so that negative
    # cases which leave out credentials are recognised as such.
    config = schemathesis.Config.from_dict({"auth": {"openapi": {"HTTPBearer": {"bearer": admin_token}}}})
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=config)
    schema.config.update(base_url=base_url)
    failures: list[str] = []
    operations = 0
    statuses: Counter[int] = Counter()

    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode, examples in _EXAMPLES.items():

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def run(case: schemathesis.Case) -> None:
                response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
                statuses[response.status_code // 100] += 1

            try:
                run()
            except Unsatisfiable:
                pass  # nothing to break in an operation without parameters or body (negative mode)
            except (
                Exception,
                BaseExceptionGroup,
            ) as e:  # collect every operation's failure, then report them together
                failures.append(f"{operation.label} [{mode}]:\n{''.join(traceback.format_exception_only(e))}")

    assert operations >= 24
    assert not failures, "\n\n".join(failures)
    # The generated requests reached the routes: many were accepted, many refused as invalid.
    print("responses by class:", dict(statuses))
    assert statuses[2] >= 50 and statuses[4] >= 50, statuses
