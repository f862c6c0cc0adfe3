"""Each closed set of names is defined once (store.domain) and the database's CHECKs say the same."""

import re
from importlib import resources

import pytest

from store import domain


def _schema() -> str:
    return "\n".join(
        resources.files("migrations").joinpath(name).read_text()
        for name in ("0001_init.sql", "0002_api.sql", "0005_webhooks.sql")
    )


def _table_states(table: str) -> set[str]:
    """The values the CHECK on `table`'s state column allows."""
    body = re.search(rf"CREATE TABLE {table} \((.*?)\n\);", _schema(), re.DOTALL)
    assert body, table
    check = re.search(r"\bstate\s+text NOT NULL[^,]*?CHECK \(state IN \(([^)]*)\)\)", body[1])
    assert check, table
    return set(re.findall(r"'([^']+)'", check[1]))


def _check_values(column: str) -> set[str]:
    match = re.search(rf"{column}\s+text NOT NULL[^\n]*CHECK \({column} IN \(([^)]*)\)\)", _schema())
    assert match, column
    return set(re.findall(r"'([^']+)'", match[1]))


@pytest.mark.parametrize(
    ("column", "names"),
    [
        ("schedule_kind", domain.SCHEDULE_KINDS),
        ("status", domain.TASK_STATUSES),
        ("misfire_policy", domain.MISFIRE_POLICIES),
        ("origin", domain.RUN_ORIGINS),
    ],
)
def test_the_database_allows_exactly_the_names_defined(column: str, names: tuple[str, ...]) -> None:
    assert _check_values(column) == set(names)


def test_run_states_are_the_queue_states_and_the_history_states() -> None:
    """`scheduled` is a queued row whose time has not come; every other state is stored as such."""
    schema = _schema()
    queue = set(re.findall(r"'([a-z]+)'", re.search(r"state IN \(('queued'[^)]*)\)\)", schema)[1]))
    history = set(re.findall(r"'([a-z]+)'", re.search(r"state IN \(('succeeded'[^)]*)\)\)", schema)[1]))
    assert queue | history == set(domain.HISTORY_STATES)
    assert set(domain.RUN_STATES) == {"scheduled", *domain.HISTORY_STATES}


def test_the_topic_pattern_is_the_event_tables() -> None:
    assert f"topic ~ '{domain.TOPIC_PATTERN}'" in _schema()


def test_task_defaults_match_the_retry_policy_and_the_json_schema() -> None:
    from scheduler.task_document import TASK_SCHEMA
    from workers.retry import RetryPolicy

    assert RetryPolicy().__dict__ == domain.DEFAULT_BACKOFF
    for name, default in domain.TASK_DEFAULTS.items():
        assert TASK_SCHEMA["properties"][name]["default"] == default


@pytest.mark.parametrize(
    ("table", "names"),
    [
        ("task_run", domain.RECORDED_STATES),
        ("webhook_endpoint", domain.ENDPOINT_STATES),
        ("webhook_delivery", domain.DELIVERY_STATES),
    ],
)
def test_each_tables_states_are_the_vocabularys(table: str, names: tuple[str, ...]) -> None:
    assert _table_states(table) == set(names)


def test_a_run_ends_in_any_recorded_state_but_failed() -> None:
    """`failed` is recorded for an attempt that will be retried; it never ends a run."""
    assert set(domain.ENDED_STATES) == set(domain.RECORDED_STATES) - {"failed"}
    assert set(domain.RECORDED_STATES) < set(domain.HISTORY_STATES)


def test_the_workers_configs_default_to_the_settings() -> None:
    """A default of a worker loop is its setting's (ORDO_*), not a second number beside it."""
    from store.settings import Settings
    from workers.deliverer import DelivererConfig
    from workers.rescuer import RescuerConfig
    from workers.worker import WorkerConfig

    s = Settings  # the class: its defaults, whatever the environment says
    worker, deliverer = WorkerConfig(), DelivererConfig()
    assert (worker.concurrency, worker.lease_s, worker.poll_s) == (s.worker_concurrency, s.lease_s, s.poll_s)
    assert (worker.shutdown_grace_s, worker.rescue_interval_s) == (s.shutdown_grace_s, s.rescue_interval_s)
    assert RescuerConfig().interval_s == s.rescue_interval_s
    assert (deliverer.concurrency, deliverer.timeout_s) == (s.webhook_concurrency, s.webhook_timeout_s)
    assert (deliverer.poll_s, deliverer.rescue_interval_s) == (s.poll_s, s.rescue_interval_s)
    assert deliverer.shutdown_grace_s == s.shutdown_grace_s
    assert deliverer.retention_days == s.run_retention_days
    assert deliverer.policy.retry_delays_s == Settings().webhook_retry_delays
