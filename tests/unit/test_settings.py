"""Settings come from the environment once, with clear errors."""

from pathlib import Path

import pytest

from store.errors import ConfigError
from store.settings import SETTINGS_DOC, Settings


def test_defaults_without_environment():
    s = Settings.from_env({})
    assert s.embedded and s.data_dir == Path(".ordo") and s.api_port == 8080


def test_environment_and_overrides():
    s = Settings.from_env(
        {"DATABASE_URL": "postgresql://x/y", "ORDO_API_PORT": "9000", "ORDO_LEASE_S": "12.5"},
        worker_concurrency=3,
    )
    assert (s.database_url, s.api_port, s.lease_s, s.worker_concurrency) == (
        "postgresql://x/y",
        9000,
        12.5,
        3,
    )
    assert not s.embedded


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ORDO_API_PORT": "eighty"}, "ORDO_API_PORT='eighty' is not a valid int"),
        ({"ORDO_API_PORT": "70000"}, "ORDO_API_PORT must be a TCP port"),
        ({"ORDO_WORKER_CONCURRENCY": "0"}, "ORDO_WORKER_CONCURRENCY must be greater than 0"),
        ({"ORDO_LOG_LEVEL": "loud"}, "ORDO_LOG_LEVEL must be"),
        ({"ORDO_LEASE_S": "1"}, "ORDO_LEASE_S must be at least 3"),
    ],
)
def test_bad_values_are_refused_by_name(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_every_setting_is_documented():
    documented = {name for name, _, _ in SETTINGS_DOC}
    fields = {"DATABASE_URL"} | {
        "ORDO_" + f.upper() for f in Settings.__dataclass_fields__ if f != "database_url"
    }
    assert fields == documented
