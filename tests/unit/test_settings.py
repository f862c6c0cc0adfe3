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
        ({"ORDO_STEP_OUTPUT_MAX_BYTES": "100"}, "ORDO_STEP_OUTPUT_MAX_BYTES must be between 1024 and"),
        # a run's record may take 4 times this, as one jsonb value (at most 256 MB)
        (
            {"ORDO_STEP_OUTPUT_MAX_BYTES": str(300 * 1024 * 1024)},
            "ORDO_STEP_OUTPUT_MAX_BYTES must be between",
        ),
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


def test_each_documented_default_is_the_settings_default():
    """The default column, read as the environment would be, is the field's default."""
    defaults = Settings()
    documented = {name: default for name, default, _ in SETTINGS_DOC}
    for field in Settings.__dataclass_fields__:
        name = "DATABASE_URL" if field == "database_url" else "ORDO_" + field.upper()
        value = getattr(defaults, field)
        if documented[name] == "unset":
            assert value in (None, (), ""), name
        else:
            assert Settings.from_env({name: documented[name]}).__dict__[field] == value, name


def _readme_table() -> dict[str, str]:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {row.split("`")[1]: row for row in rows}


def _cli_envvars() -> set[str]:
    import typer.main

    from cli.main import app

    found: set[str] = set()
    stack = [typer.main.get_command(app)]
    while stack:
        command = stack.pop()
        stack.extend(getattr(command, "commands", {}).values())
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            found.update([envvar] if isinstance(envvar, str) else envvar or [])
    return found


def test_the_readme_configuration_table_is_complete():
    """Every setting appears in the README exactly as SETTINGS_DOC describes it, and every environment
    variable a command reads (such as ORDO_SOLVE_TIME_LIMIT) has its row."""
    table = _readme_table()
    for name, default, meaning in SETTINGS_DOC:
        assert table.get(name) == f"| `{name}` | `{default}` | {meaning} |", name
    missing = _cli_envvars() - set(table)
    assert not missing, f"document these in the README's configuration table: {sorted(missing)}"
